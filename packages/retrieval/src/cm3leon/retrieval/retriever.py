"""One retriever for every kind of search: a :class:`Searcher` plus the strategy.

A retriever kind (dense CLIP over FAISS, BM25 over captions, a third-party one)
only has to say how to encode a query's parts and how to search a bank; the
§2.1 rules (:mod:`cm3leon.retrieval.strategy`) are applied here, once, for all
kinds.  :class:`StrategyRetriever` implements
:class:`cm3leon.core.interfaces.Retriever`.

``retrieve(queries, k)`` semantics (the decoding package relies on them):

* inference (``training=False``, the default): per query, the documents retrieved
  by the available query parts (2 by text + 2 by image by default), interleaved
  text/image, best first within each part, cut to ``k``; no dropout, no sampling.
  ``k=0`` returns empty lists.
* training (``training=True``): query dropout on the text part, then ``k``
  (default ``strategy.train_select`` = 3) documents of that pool chosen at random.
* ``k`` larger than the pool grows the per-part quotas; ``k`` larger than what the
  bank can supply after the rules returns every document that passes them (fewer
  than ``k``), never an error.

Two numbers describe a candidate (:class:`~cm3leon.retrieval.strategy.Hit`): its
``score``, given by the query part that found it (what MIPS / BM25 ranks by), and its
``relevance`` to the whole query, which a :class:`Searcher` defines so that 1.0 means
the query itself; the "relevance score <= 0.9" rule (``max_score``) reads the latter.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.retrieval.strategy import (
    MODALITIES,
    Hit,
    RetrievalStrategy,
    interleave,
    modality_quotas,
    query_seed,
    sample_subset,
    select_candidates,
)

__all__ = ["QueryEncoding", "Searcher", "StrategyRetriever"]


@dataclass
class QueryEncoding:
    """Encoded queries, as produced by :meth:`Searcher.encode_queries`.

    Attributes:
        parts: modality -> one entry per query (``None`` where that part is missing),
            with query dropout applied (what is searched).
        vectors: ``(Q, D)`` unit vectors of the whole query documents, without dropout
            (zero rows allowed), used by the near-duplicate rule.
        whole: optional, one entry per query: the searcher's own encoding of the whole
            query without dropout, for :meth:`Searcher.relevance` when ``vectors`` do not
            suffice (``bm25``: the query's words).
    """

    parts: dict[str, list[Any]]
    vectors: np.ndarray = field(repr=False)
    whole: list[Any] | None = field(default=None, repr=False)


@runtime_checkable
class Searcher(Protocol):
    """What one kind of retriever contributes."""

    @property
    def size(self) -> int:
        """Number of documents in the bank."""
        ...

    def encode_queries(
        self, queries: Sequence[Document], *, dropout: float, seeds: Sequence[int] | None
    ) -> QueryEncoding:
        """Encode each query part; ``seeds`` (one per query) drive text-token dropout."""
        ...

    def search(self, modality: str, encoded: Sequence[Any], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` bank rows per encoded query: ``scores (Q, k)``, ``rows (Q, k)`` (-1 = none)."""
        ...

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Unit vectors ``(n, D)`` of bank rows, comparable with ``QueryEncoding.vectors``."""
        ...

    def relevance(self, encoded: QueryEncoding, query: int, rows: np.ndarray) -> np.ndarray:
        """Relevance ``(n,)`` of bank ``rows`` to query number ``query`` of ``encoded``.

        The number the §2.1 rule "relevance score <= 0.9" (``max_score``) compares.  It
        must be 1.0 for a bank document equal to the query as this searcher sees it, and
        must not depend on query dropout (use the query without dropout).  It is a
        property of the whole query, not of the part that found the candidate: with a
        part's own search score, a caption-image query's own bank entry scores far below
        1 and the rule never fires.
        """
        ...

    def row_id(self, row: int) -> str:
        """Document id of a bank row."""
        ...

    def documents(self, rows: Sequence[int]) -> list[Document]:
        """The documents stored at bank rows."""
        ...


class StrategyRetriever:
    """A :class:`Searcher` with CM3Leon's retrieval strategy applied.

    Args:
        searcher: the kind-specific search.
        strategy: the §2.1 rules (defaults: the paper's numbers).
        name: registered name of the retriever kind (for messages and manifests).
    """

    def __init__(self, searcher: Searcher, strategy: RetrievalStrategy | None = None, *, name: str = "") -> None:
        missing = [m for m in ("size", "encode_queries", "search", "vectors", "relevance", "row_id", "documents")
                   if not hasattr(searcher, m)]
        if missing:
            raise TypeError(
                f"retriever {name or type(searcher).__name__!r}: the searcher {type(searcher).__name__} lacks "
                f"{', '.join(missing)} (see cm3leon.retrieval.retriever.Searcher)"
            )
        self.searcher = searcher
        self.strategy = strategy or RetrievalStrategy()
        self.name = name

    @property
    def encoder(self) -> Any:
        """The searcher's document encoder (CLIP for ``clip``), or ``None``."""
        return getattr(self.searcher, "encoder", None)

    def retrieve(
        self, queries: Sequence[Document], k: int | None = None, *, training: bool = False
    ) -> list[list[Document]]:
        """Up to ``k`` documents per query (see the module docstring for the rules)."""
        hits = self.retrieve_hits(queries, k, training=training)
        flat = [h.row for per_query in hits for h in per_query]
        docs = iter(self.searcher.documents(flat)) if flat else iter(())
        return [[next(docs) for _ in per_query] for per_query in hits]

    def retrieve_hits(
        self, queries: Sequence[Document], k: int | None = None, *, training: bool = False
    ) -> list[list[Hit]]:
        """Like :meth:`retrieve` but returns :class:`Hit` records (row, id, score, part)."""
        s = self.strategy
        if k is None:
            k = s.train_select if training else s.num_by_text + s.num_by_image
        if k < 0:
            raise ValueError(f"retrieve: k must be >= 0, got {k}")
        if not queries or k == 0:
            return [[] for _ in queries]
        keys = [q.id or q.text for q in queries]
        seeds = [query_seed(s.seed, key, "dropout") for key in keys] if training else None
        dropout = s.query_dropout if training else 0.0
        enc = self.searcher.encode_queries(queries, dropout=dropout, seeds=seeds)
        pools = self._pools(queries, enc, k, training)
        out: list[list[Hit]] = []
        for key, pool in zip(keys, pools, strict=True):
            if training:
                rng = np.random.default_rng(query_seed(s.seed, key, "select"))
                out.append(sample_subset(pool, k, rng))
            else:
                out.append(pool[:k])
        return out

    # ------------------------------------------------------------ internals
    def _pools(
        self, queries: Sequence[Document], enc: QueryEncoding, k: int, training: bool = False
    ) -> list[list[Hit]]:
        """Per query: hits by each available part, interleaved text/image."""
        n = len(queries)
        strategy = self.strategy
        if not training and strategy.max_score_at == "training":
            strategy = dataclasses.replace(strategy, max_score=math.inf)
        available = [[m for m in MODALITIES if enc.parts.get(m) and enc.parts[m][i] is not None] for i in range(n)]
        quotas = [modality_quotas(self.strategy, avail, k) for avail in available]
        taken_ids = [{q.id} if q.id else set() for q in queries]
        taken_vecs: list[list[np.ndarray]] = [
            [v] if float(np.linalg.norm(v)) > 0 else [] for v in np.asarray(enc.vectors, dtype=np.float32)
        ]
        by_modality: dict[str, list[list[Hit]]] = {m: [[] for _ in range(n)] for m in MODALITIES}
        for m in MODALITIES:
            todo = [i for i in range(n) if quotas[i].get(m, 0) > 0]
            depth = self.strategy.search_depth
            while todo:
                depth_now = min(depth, self.searcher.size)
                scores, rows = self.searcher.search(m, [enc.parts[m][i] for i in todo], depth_now)
                still: list[int] = []
                for j, i in enumerate(todo):
                    # Re-select from scratch at each depth so the result does not depend on it.
                    ids, vecs = set(taken_ids[i]), list(taken_vecs[i])
                    kept = select_candidates(
                        rows[j], scores[j], quota=quotas[i][m], strategy=strategy,
                        row_id=self.searcher.row_id, taken_ids=ids, taken_vectors=vecs,
                        vectors=self.searcher.vectors, modality=m,
                        relevance=functools.partial(self.searcher.relevance, enc, i),
                    )
                    if len(kept) < quotas[i][m] and depth_now < self.searcher.size:
                        still.append(i)
                        continue
                    taken_ids[i], taken_vecs[i] = ids, vecs
                    by_modality[m][i] = [hit for hit, _ in kept]
                todo, depth = still, depth * 2
        return [interleave([by_modality[m][i] for m in MODALITIES]) for i in range(n)]
