"""BM25 over captions: a sparse, text-only retriever (pure numpy).

Okapi BM25 (Robertson & Zaragoza) with Lucene's non-negative idf::

    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(q, d) = sum_t  qtf(t) * idf(t) * tf(t,d) (k1 + 1) / (tf(t,d) + k1 (1 - b + b |d| / avgdl))

Scores are divided by the query's *self score* (the score a bank document equal
to the query would get), so a verbatim copy of the query scores 1.  That normalised
score is also the **relevance** the strategy's ``max_score`` (0.9) rule reads, as
for CLIP (1.0 = the query itself), computed with the query's words *without* dropout
(in training the search itself uses the dropped words).  BM25 only reads text: to it a
bank document with the query's caption is the query itself, whatever its image.  The
near-duplicate rule compares L2-normalised tf-idf vectors.  An image-only query
retrieves nothing and a caption-image query takes both modality quotas with its
caption.

The bank is saved like the dense one (``manifest.json`` with hashes, ``bm25.npz``,
``ids.json``, documents); :func:`bm25_retriever` is registered as ``"bm25"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.retrieval.bank import (
    IDS_FILE,
    MANIFEST_FILE,
    BankManifest,
    file_record,
    read_manifest,
    verify_files,
)
from cm3leon.retrieval.retriever import QueryEncoding, StrategyRetriever
from cm3leon.retrieval.store import (
    DOCUMENTS_FILE,
    OFFSETS_FILE,
    DocumentStore,
    JsonlDocumentStore,
    ListDocumentStore,
    write_jsonl_documents,
)
from cm3leon.retrieval.strategy import RetrievalStrategy, drop_tokens

__all__ = ["BM25Bank", "BM25Searcher", "bm25_retriever", "tokenize_words"]

BM25_FILE = "bm25.npz"
_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize_words(text: str) -> list[str]:
    """Lower-cased word tokens (the unit of BM25 and of its query dropout)."""
    return _WORD.findall(text.lower())


class BM25Bank:
    """Inverted index of the bank's captions (build it with :meth:`build`).

    Args:
        vocab: word -> term id.
        postings: ``(indptr (V+1,), docs (P,), tfs (P,))``: term ``t``'s documents and counts
            are ``docs[indptr[t]:indptr[t+1]]`` and ``tfs[...]``.
        doc_len: words per document ``(N,)``.
        ids: document id per row.
        store: documents per row.
        k1: term-frequency saturation.
        b: length normalisation.
    """

    def __init__(self, vocab: dict[str, int], postings: tuple[np.ndarray, np.ndarray, np.ndarray],
                 doc_len: np.ndarray, ids: Sequence[str], store: DocumentStore,
                 *, k1: float = 1.5, b: float = 0.75) -> None:
        self.vocab = vocab
        # CSC by term: term t's documents are docs[indptr[t]:indptr[t+1]] with counts tfs[...]
        self.indptr, self.docs, self.tfs = postings
        self.doc_len = doc_len.astype(np.float32)
        self.ids = list(ids)
        self.store = store
        self.k1, self.b = float(k1), float(b)
        n = len(self.ids)
        df = np.diff(self.indptr).astype(np.float64)
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)  # (V,)
        self.avgdl = float(self.doc_len.mean()) if n and self.doc_len.sum() > 0 else 1.0

    @classmethod
    def build(cls, docs: Sequence[Document], *, k1: float = 1.5, b: float = 0.75) -> BM25Bank:
        vocab: dict[str, int] = {}
        triples: list[tuple[int, int, int]] = []  # (term, doc, tf)
        doc_len = np.zeros(len(docs), dtype=np.float32)
        for d, doc in enumerate(docs):
            counts: dict[int, int] = {}
            for w in tokenize_words(doc.text):
                t = vocab.setdefault(w, len(vocab))
                counts[t] = counts.get(t, 0) + 1
            doc_len[d] = sum(counts.values())
            triples.extend((t, d, c) for t, c in counts.items())
        arr = np.array(sorted(triples), dtype=np.int64).reshape(-1, 3)
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.add.at(indptr, arr[:, 0] + 1, 1)
        postings = (np.cumsum(indptr), arr[:, 1].copy(), arr[:, 2].astype(np.float32))
        return cls(vocab, postings, doc_len, [d.id for d in docs], ListDocumentStore(docs), k1=k1, b=b)

    @property
    def size(self) -> int:
        return len(self.ids)

    # --------------------------------------------------------------- scoring
    def _weights(self, tf: np.ndarray, length: np.ndarray | float) -> np.ndarray:
        return tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * np.asarray(length) / self.avgdl))

    def _query_terms(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
        counts: dict[int, int] = {}
        for w in words:
            if w in self.vocab:
                t = self.vocab[w]
                counts[t] = counts.get(t, 0) + 1
        terms = np.fromiter(counts, dtype=np.int64, count=len(counts))
        qtf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        return terms, qtf, len(words)

    def score(self, words: Sequence[str]) -> np.ndarray:
        """Normalised BM25 score of every bank document ``(N,)`` for a query's words."""
        terms, qtf, qlen = self._query_terms(words)
        scores = np.zeros(self.size, dtype=np.float32)
        if terms.size == 0:
            return scores
        for t, q in zip(terms.tolist(), qtf.tolist(), strict=True):
            lo, hi = self.indptr[t], self.indptr[t + 1]
            rows = self.docs[lo:hi]
            scores[rows] += q * self.idf[t] * self._weights(self.tfs[lo:hi], self.doc_len[rows])
        self_score = float(np.sum(qtf * self.idf[terms] * self._weights(qtf, qlen)))
        return scores / self_score if self_score > 0 else scores

    def search(self, words_batch: Sequence[Sequence[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(int(k), self.size)
        scores = np.zeros((len(words_batch), k), dtype=np.float32)
        rows = np.full((len(words_batch), k), -1, dtype=np.int64)
        for i, words in enumerate(words_batch):
            s = self.score(words)
            top = np.argsort(-s, kind="stable")[:k]
            top = top[s[top] > 0]  # documents sharing no term are not candidates
            scores[i, : len(top)], rows[i, : len(top)] = s[top], top
        return scores, rows

    def tfidf(self, words_list: Sequence[Sequence[str]]) -> np.ndarray:
        """L2-normalised tf-idf vectors ``(n, V)`` (zero rows for texts without known words)."""
        out = np.zeros((len(words_list), len(self.vocab)), dtype=np.float32)
        for i, words in enumerate(words_list):
            terms, qtf, _ = self._query_terms(words)
            out[i, terms] = qtf * self.idf[terms]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)

    # ----------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        from cm3leon.core.io import atomic_directory, atomic_write_json, mark_complete

        with atomic_directory(directory, overwrite=overwrite) as tmp:
            terms = sorted(self.vocab, key=self.vocab.__getitem__)
            np.savez(tmp / BM25_FILE, indptr=self.indptr, docs=self.docs, tfs=self.tfs, doc_len=self.doc_len,
                     terms=np.array(terms, dtype=np.str_))
            atomic_write_json(tmp / IDS_FILE, self.ids, indent=0)
            write_jsonl_documents(self.store.get(range(self.size)), tmp)
            files = {n: file_record(tmp / n) for n in (BM25_FILE, IDS_FILE, DOCUMENTS_FILE, OFFSETS_FILE)}
            manifest = BankManifest(kind="bm25", size=self.size, files=files, extra={"k1": self.k1, "b": self.b})
            atomic_write_json(tmp / MANIFEST_FILE, manifest.to_json())
            mark_complete(tmp, {"kind": "bm25", "size": self.size})
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> BM25Bank:
        directory = Path(directory)
        manifest = read_manifest(directory, kind="bm25")
        verify_files(directory, manifest, (BM25_FILE, IDS_FILE, DOCUMENTS_FILE, OFFSETS_FILE))
        with np.load(directory / BM25_FILE, allow_pickle=False) as z:
            vocab = {str(t): i for i, t in enumerate(z["terms"].tolist())}
            postings = (z["indptr"], z["docs"], z["tfs"])
            doc_len = z["doc_len"]
        ids = json.loads((directory / IDS_FILE).read_text(encoding="utf-8"))
        return cls(vocab, postings, doc_len, ids, JsonlDocumentStore(directory),
                   k1=manifest.extra.get("k1", 1.5), b=manifest.extra.get("b", 0.75))


class BM25Searcher:
    """BM25 as a :class:`~cm3leon.retrieval.retriever.Searcher` (text part only)."""

    def __init__(self, bank: BM25Bank) -> None:
        self.bank = bank
        self._row_words: dict[int, list[str]] = {}

    @property
    def size(self) -> int:
        return self.bank.size

    def encode_queries(
        self, queries: Sequence[Document], *, dropout: float, seeds: Sequence[int] | None
    ) -> QueryEncoding:
        clean = [tokenize_words(q.text) for q in queries]
        text: list[Any] = []
        for i, words in enumerate(clean):
            if not words:
                text.append(None)
            elif dropout > 0 and seeds is not None:
                text.append(drop_tokens(words, dropout, np.random.default_rng(seeds[i])))
            else:
                text.append(words)
        return QueryEncoding(parts={"text": text, "image": [None] * len(queries)}, vectors=self.bank.tfidf(clean),
                             whole=clean)

    def search(self, modality: str, encoded: Sequence[Any], k: int) -> tuple[np.ndarray, np.ndarray]:
        if modality != "text":
            raise ValueError(f"bm25 searches text only, not {modality!r}")
        return self.bank.search(list(encoded), k)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = [int(r) for r in rows]
        missing = [r for r in rows if r not in self._row_words]
        for r, doc in zip(missing, self.bank.store.get(missing), strict=True):
            self._row_words[r] = tokenize_words(doc.text)
        return self.bank.tfidf([self._row_words[r] for r in rows])

    def relevance(self, encoded: QueryEncoding, query: int, rows: np.ndarray) -> np.ndarray:
        """Normalised BM25 score ``(n,)`` of ``rows`` for the query's words without dropout."""
        if encoded.whole is None:
            raise ValueError("bm25 relevance needs the query words (QueryEncoding.whole) from encode_queries")
        return self.bank.score(encoded.whole[query])[np.asarray(rows, dtype=np.int64)]

    def row_id(self, row: int) -> str:
        return self.bank.ids[row]

    def documents(self, rows: Sequence[int]) -> list[Document]:
        return self.bank.store.get(rows)


def bm25_retriever(
    bank: str | Path | BM25Bank | None = None,
    *,
    documents: Sequence[Document] | None = None,
    k1: float = 1.5,
    b: float = 0.75,
    encoder: Any = None,
    **strategy: Any,
) -> StrategyRetriever:
    """Build the ``"bm25"`` retriever from a saved bank or from in-memory documents.

    Args:
        bank: a BM25 bank directory (``cm3leon retrieval build`` with ``kind: bm25``).
        documents: alternatively, documents to index now.
        k1, b: BM25 parameters (in-memory builds only; saved banks keep theirs).
        encoder: ignored (accepted so every retriever factory takes the same options).
        **strategy: :class:`RetrievalStrategy` fields.
    """
    del encoder
    strat = RetrievalStrategy.from_options(**strategy)
    if (bank is None) == (documents is None):
        raise ValueError("bm25 retriever: give exactly one of bank=DIR or documents=[...]")
    if documents is not None:
        mem = BM25Bank.build(documents, k1=k1, b=b)
    elif isinstance(bank, BM25Bank):
        mem = bank
    else:
        mem = BM25Bank.load(bank)
    return StrategyRetriever(BM25Searcher(mem), strat, name="bm25")
