"""Retrieval-augmented token shards for pretraining (Figure 9).

For every query document (a caption-image pair) the configured retriever returns
``k`` documents (training mode: query dropout, then ``train_select`` = 3 of the
2-by-text + 2-by-image pool at random), and core's serialiser writes one example::

    <eos> retrieved_1 <break> retrieved_2 <break> retrieved_3 <break> query

(``DocumentTokenizer.encode_example``: one ``<break>`` at each document boundary,
images bracketed by ``<break>``).  The output is a token-shard directory written
atomically by :class:`cm3leon.core.shards.TokenShardWriter`, read by the
pretraining data pipeline.  Each example also stores where its documents lie (the
``parts`` column): an example longer than the trainer's rows loses retrieved documents,
last first, before the CM3 transform -- never the query or its infill blocks
(:func:`cm3leon.core.serialize.fit_example`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cm3leon.retrieval.config import AugmentConfig

__all__ = ["CodeCache", "augment_shards", "build_retriever", "document_tokenizer"]

log = logging.getLogger("cm3leon.retrieval.augment")


def document_tokenizer(cfg: AugmentConfig) -> Any:
    """Core's :class:`DocumentTokenizer` from the configured tokenizers (by registered name)."""
    from cm3leon.core.tokenization import build_document_tokenizer

    if not cfg.image_tokenizer and not cfg.image_codebook_size:
        raise ValueError("augment: set image_tokenizer, or image_codebook_size for documents with VQ codes")
    return build_document_tokenizer(
        cfg.text_tokenizer, cfg.image_tokenizer or None, image_codebook_size=cfg.image_codebook_size,
        num_sentinels=cfg.num_sentinels, tokens_per_image=cfg.tokens_per_image or None,
        query_loss_weight=cfg.query_loss_weight or None,
    )  # fmt: skip


def build_retriever(cfg: AugmentConfig) -> Any:
    """The configured retriever over ``cfg.bank`` with ``cfg.strategy`` (by registered name)."""
    from cm3leon.core.config import ConfigError, build_component
    from cm3leon.core.plugin_manager import get_registries

    options = {"bank": cfg.bank, **asdict(cfg.strategy), **dict(cfg.retriever.options)}
    if cfg.encoder:
        options["encoder"] = cfg.encoder
    component = {"name": cfg.retriever.name, "options": options}
    try:
        return build_component(get_registries().retrievers, component, where="augment.retriever")
    except ConfigError as err:
        raise ValueError(str(err)) from None
    except TypeError as err:
        raise ValueError(f"augment.retriever.options: {err}") from None


def augment_shards(cfg: AugmentConfig, *, progress: bool = True, overwrite: bool = False,
                   retriever: Any = None) -> dict[str, Any]:
    """Write the retrieval-augmented token shards of ``cfg``; returns a report.

    Args:
        cfg: the ``augment`` config section.
        progress: tqdm progress bar.
        overwrite: replace an existing output directory (otherwise a complete one is reused).
        retriever: use this retriever instead of building ``cfg.retriever`` (tests).
    """
    from tqdm.auto import tqdm

    from cm3leon.core.io import is_complete
    from cm3leon.core.shards import TokenShardWriter, verify_dataset
    from cm3leon.retrieval.data import count_documents, iter_documents

    out = Path(cfg.output)
    if is_complete(out) and not overwrite:
        info = verify_dataset(out, check_hashes=False)
        log.info("%s: exists (%d examples); nothing to do", out, info.num_samples)
        return {"output": str(out), "examples": info.num_samples, "reused": True, **info.meta.get("report", {})}
    doc_tok = document_tokenizer(cfg)
    retriever = retriever if retriever is not None else build_retriever(cfg)
    k = cfg.k or (cfg.strategy.train_select if cfg.training else cfg.strategy.num_by_text + cfg.strategy.num_by_image)
    total = count_documents(cfg.data)
    counts: Counter[int] = Counter()
    meta = {"bank": str(cfg.bank), "retriever": cfg.retriever.name, "k": k, "training": cfg.training,
            "strategy": asdict(cfg.strategy), "queries": [str(s) for s in cfg.data.shards]}
    # ``parts``: where each document lies, so the trainer can drop retrieved documents (last
    # first) to fit its rows instead of cutting the query (core.serialize.fit_example).
    writer = TokenShardWriter(out, doc_tok.vocab, with_loss_weights=bool(cfg.query_loss_weight),
                              with_parts=True, overwrite=overwrite or out.exists(), meta=meta)
    cache = CodeCache(doc_tok.image_tokenizer)
    bar = tqdm(total=total, unit="query", desc=f"augment {out.name}", disable=not progress)
    with writer, bar:
        batch: list[Any] = []
        for doc in iter_documents(cfg.data):
            batch.append(doc)
            if len(batch) == cfg.batch_size:
                _write_batch(batch, retriever, doc_tok, writer, cfg, k, counts, cache)
                bar.update(len(batch))
                batch = []
        if batch:
            _write_batch(batch, retriever, doc_tok, writer, cfg, k, counts, cache)
            bar.update(len(batch))
        report = {"output": str(out), "queries": total, "examples": writer.num_samples,
                  "retrieved_histogram": {str(n): c for n, c in sorted(counts.items())}, **writer.stats()}
        writer.meta["report"] = report
    log.info("augmented %s: %s", out, report)
    return report


class CodeCache:
    """VQ codes of documents' images, encoded in batches and reused across examples.

    A bank document appears in many examples; its images are tokenized once (per
    ``capacity`` most recent documents) instead of once per example.
    """

    def __init__(self, image_tokenizer: Any, capacity: int = 100_000) -> None:
        self.tokenizer = image_tokenizer
        self.capacity = capacity
        self.codes: dict[tuple[Any, ...], tuple[int, ...]] = {}

    def attach(self, docs: list[Any]) -> list[Any]:
        """``docs`` with codes on every image segment (pixels kept).

        Codes are cached by ``(document id, segment index)``; documents without an id are
        encoded every time.
        """
        from cm3leon.core.documents import ImageSegment

        if self.tokenizer is None:
            return docs
        local: dict[Any, tuple[int, ...]] = {}
        todo: dict[Any, Any] = {}
        for n, d in enumerate(docs):
            for i, seg in enumerate(d.segments):
                key = self._key(d, n, i)
                if isinstance(seg, ImageSegment) and seg.codes is None and key not in self.codes:
                    todo[key] = seg.pil()
        if todo:
            encoded = self.tokenizer.encode(list(todo.values()))  # (B, N)
            rows = encoded.tolist() if hasattr(encoded, "tolist") else list(encoded)
            if len(self.codes) + len(todo) > self.capacity:
                self.codes.clear()
            for key, row in zip(todo, rows, strict=True):
                (self.codes if key[0] is not None else local)[key] = tuple(int(c) for c in row)
        out = []
        for n, d in enumerate(docs):
            segs = []
            for i, seg in enumerate(d.segments):
                if isinstance(seg, ImageSegment) and seg.codes is None:
                    key = self._key(d, n, i)
                    seg = ImageSegment(image=seg.image, codes=local[key] if key in local else self.codes[key])
                segs.append(seg)
            out.append(d.replace(segments=tuple(segs)))
        return out

    @staticmethod
    def _key(doc: Any, position: int, segment: int) -> tuple[Any, ...]:
        return (doc.id, segment) if doc.id else (None, position, segment)


def _write_batch(batch: list[Any], retriever: Any, doc_tok: Any, writer: Any, cfg: AugmentConfig, k: int,
                 counts: Counter[int], cache: CodeCache) -> None:
    retrieved = retriever.retrieve(batch, k, training=cfg.training)
    flat = cache.attach([*batch, *(d for docs in retrieved for d in docs)])
    batch, rest = flat[: len(batch)], iter(flat[len(batch) :])
    retrieved = [[next(rest) for _ in docs] for docs in retrieved]
    for query, docs in zip(batch, retrieved, strict=True):
        example = doc_tok.encode_example_with_targets(query, docs)
        writer.write(example.ids, id=query.id, loss_weights=example.weights, parts=example.parts)
        counts[len(docs)] += 1
        if cfg.keep_unaugmented:
            alone = doc_tok.encode_example_with_targets(query)
            writer.write(alone.ids, id=f"{query.id}#k0", loss_weights=alone.weights, parts=alone.parts)
