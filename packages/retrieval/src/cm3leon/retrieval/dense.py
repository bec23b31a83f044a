"""The dense retriever of §2.1: CLIP bi-encoder + MIPS over a FAISS memory bank.

A query document's text part and image part are encoded separately by the frozen
CLIP towers and searched separately against the bank's document vectors (the
modality rule); query dropout removes CLIP BPE tokens of the text part before
encoding.  :func:`clip_retriever` is the factory registered as retriever
``"clip"``.

**Relevance** (the §2.1 "relevance score <= 0.9" rule) is the paper's ``r(q, m)``: the
inner product of the *whole* query document's vector (built like a bank vector, from
the query's parts without dropout) with the candidate's document vector, so the query's
own bank entry, and any copy of it, scores 1.0.  A part's search score cannot serve: a
unit part vector ``p`` against its own document ``normalize(p + p')`` scores
``sqrt((1 + c) / 2)`` with ``c = p . p'``: 0.72 for ``c = 0.03`` (the rule never fires),
0.986 for ``c = 0.94``, so its meaning would follow the encoder's text-image alignment.
For a text-only prompt the query document *is* its text, so relevance equals the text
part's score: a bank document carrying the prompt as its caption plus an image scores
``sqrt((1 + c) / 2)`` (retrieved while ``c < 0.62``), a text-only bank document with
the same text scores 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cm3leon.core.documents import Document
from cm3leon.retrieval.bank import MemoryBank
from cm3leon.retrieval.encoder import ClipDocumentEncoder, CodeDecoder, combine_parts, load_encoder
from cm3leon.retrieval.retriever import QueryEncoding, StrategyRetriever
from cm3leon.retrieval.strategy import RetrievalStrategy, drop_tokens

__all__ = ["DenseSearcher", "clip_retriever", "drop_clip_tokens"]


def drop_clip_tokens(tokens: torch.Tensor, rate: float, rng: np.random.Generator, *, eot_id: int) -> torch.Tensor:
    """Query dropout on one CLIP token row ``(L,)``: drop ``rate`` of the word tokens.

    The start token, the end token and the zero padding are kept; the remaining
    tokens are shifted left and the row re-padded.
    """
    ids = tokens.tolist()
    end = ids.index(eot_id) if eot_id in ids else len(ids)
    words = ids[1:end]
    kept = drop_tokens(words, rate, rng)
    row = [ids[0], *kept, *ids[end : end + 1]]
    out = torch.zeros_like(tokens)
    out[: len(row)] = torch.tensor(row, dtype=tokens.dtype)
    return out


class DenseSearcher:
    """CLIP query encoding and FAISS search (a :class:`~cm3leon.retrieval.retriever.Searcher`).

    Args:
        bank: the memory bank (vectors made by ``encoder``).
        encoder: the frozen CLIP document encoder.
        code_decoder: decodes VQ-only query images to pixels (an image tokenizer's
            ``decode``); without it such image parts are not used for search.
    """

    def __init__(self, bank: MemoryBank, encoder: ClipDocumentEncoder, *, code_decoder: CodeDecoder | None = None) -> None:
        if bank.dim != encoder.dim:
            raise ValueError(f"bank dimension {bank.dim} != encoder dimension {encoder.dim}")
        self.bank = bank
        self.encoder = encoder
        self.code_decoder = code_decoder

    @property
    def size(self) -> int:
        return self.bank.size

    def _usable_image(self, doc: Document) -> bool:
        return any(seg.image is not None or self.code_decoder is not None for seg in doc.images)

    def encode_queries(
        self, queries: Sequence[Document], *, dropout: float, seeds: Sequence[int] | None
    ) -> QueryEncoding:
        n = len(queries)
        text_rows = [i for i, q in enumerate(queries) if q.text.strip()]
        image_rows = [i for i, q in enumerate(queries) if self._usable_image(q)]
        dim = self.encoder.dim
        text_clean = torch.zeros(n, dim)
        text_query = torch.zeros(n, dim)
        if text_rows:
            tokens = self.encoder.tokenize([queries[i].text for i in text_rows])  # (n_t, L)
            text_clean[text_rows] = self.encoder.encode_tokens(tokens)
            if dropout > 0 and seeds is not None:
                eot = int(getattr(self.encoder.tokenizer, "eot_token_id", tokens.max()))
                dropped = torch.stack([
                    drop_clip_tokens(tokens[j], dropout, np.random.default_rng(seeds[i]), eot_id=eot)
                    for j, i in enumerate(text_rows)
                ])
                text_query[text_rows] = self.encoder.encode_tokens(dropped)
            else:
                text_query[text_rows] = text_clean[text_rows]
        image = torch.zeros(n, dim)
        if image_rows:
            image_only = [Document(tuple(queries[i].images), id=queries[i].id) for i in image_rows]
            _, img, _, _ = self.encoder.encode_parts(image_only, code_decoder=self.code_decoder)
            image[image_rows] = img
        has_text = torch.zeros(n, dtype=torch.bool)
        has_text[text_rows] = True
        has_image = torch.zeros(n, dtype=torch.bool)
        has_image[image_rows] = True
        vectors = combine_parts(text_clean, image, has_text, has_image).numpy()  # (Q, D), zero rows stay zero
        parts: dict[str, list[Any]] = {
            "text": [text_query[i].numpy() if has_text[i] else None for i in range(n)],
            "image": [image[i].numpy() if has_image[i] else None for i in range(n)],
        }
        return QueryEncoding(parts=parts, vectors=vectors)

    def search(self, modality: str, encoded: Sequence[Any], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.bank.search(np.stack(list(encoded)), k)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.bank.vectors(rows)

    def relevance(self, encoded: QueryEncoding, query: int, rows: np.ndarray) -> np.ndarray:
        """Cosine of the whole query document (no dropout) with the documents at ``rows`` ``(n,)``."""
        return self.bank.vectors(rows) @ np.asarray(encoded.vectors[query], dtype=np.float32)

    def row_id(self, row: int) -> str:
        return self.bank.ids[row]

    def documents(self, rows: Sequence[int]) -> list[Document]:
        return self.bank.documents(rows)


def clip_retriever(
    bank: str | Path | MemoryBank | None = None,
    *,
    documents: Sequence[Document] | None = None,
    encoder: ClipDocumentEncoder | str | Path | None = None,
    code_decoder: CodeDecoder | None = None,
    factory: str = "Flat",
    search_params: str | None = None,
    verify_documents: bool = True,
    **strategy: Any,
) -> StrategyRetriever:
    """Build the ``"clip"`` retriever.

    Args:
        bank: a bank directory (from ``cm3leon retrieval build``) or a loaded bank.
        documents: alternatively, documents to index in memory now (needs ``encoder``).
        encoder: a loaded encoder or an encoder directory; defaults to the encoder path
            recorded in the bank manifest.
        code_decoder: pixels for VQ-only images (queries and in-memory documents).
        factory: FAISS index-factory string for in-memory ``documents``.
        search_params: FAISS search parameters (``"nprobe=32"``), overriding the bank's.
        verify_documents: SHA-256-check each source shard file of a bank by reference the
            first time one of its documents is retrieved (sizes are always checked).
        **strategy: :class:`RetrievalStrategy` fields (``max_score=0.9``, ``seed=...``).
    """
    strat = RetrievalStrategy.from_options(**strategy)
    if (bank is None) == (documents is None):
        raise ValueError("clip retriever: give exactly one of bank=DIR or documents=[...]")
    if documents is not None:
        enc = _as_encoder(encoder)
        vectors = enc.encode_documents(documents, code_decoder=code_decoder).numpy()
        mem = MemoryBank.build(
            vectors, documents, factory=factory, search_params=search_params or "",
            encoder={"name": enc.name, "fingerprint": enc.fingerprint},
        )
    elif isinstance(bank, MemoryBank):
        mem = bank
        enc = _as_encoder(encoder)
    else:
        from cm3leon.retrieval.bank import read_manifest

        manifest = read_manifest(bank, kind="faiss")
        enc = _as_encoder(encoder if encoder is not None else manifest.encoder.get("path"))
        mem = MemoryBank.load(
            bank, expected_dim=enc.dim, encoder_fingerprint=enc.fingerprint, search_params=search_params,
            verify_documents=verify_documents,
        )
    return StrategyRetriever(DenseSearcher(mem, enc, code_decoder=code_decoder), strat, name="clip")


def _as_encoder(encoder: ClipDocumentEncoder | str | Path | None) -> ClipDocumentEncoder:
    if isinstance(encoder, ClipDocumentEncoder):
        return encoder
    if encoder is None or str(encoder) == "":
        raise ValueError("clip retriever needs encoder=<encoder directory> (none recorded in the bank)")
    return load_encoder(encoder)
