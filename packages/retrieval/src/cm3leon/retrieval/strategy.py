"""CM3Leon's retrieval strategy (§2.1) as options plus pure helpers.

The paper's rules, each a field of :class:`RetrievalStrategy`:

* **relevance**: candidates come from maximum inner product search, best first;
* **too similar to the query**: a candidate whose *relevance* to the query is above
  ``max_score`` (0.9) is skipped ("we only use retrieved documents with relevance
  score <= 0.9") -- when sampling documents for training, where the paper states it
  (``max_score_at: training``, the default; ``always`` applies it at inference too).  Relevance is defined by the retriever kind
  (:meth:`cm3leon.retrieval.retriever.Searcher.relevance`) so that **1.0 means the
  query itself**: for ``clip`` it is the cosine between the whole query document's
  vector and the candidate's document vector (the paper's ``r(q, m)``), for ``bm25``
  the BM25 score divided by the query's self score.  It is computed on the query
  without dropout, so the rule does not depend on which tokens were dropped.  It is
  *not* the search score of the query part that found the candidate
  (:attr:`Hit.score`): with ``clip`` a part alone scores ``sqrt((1 + c) / 2)``
  against its own document (``c`` the document's text-image cosine), 0.72 for
  ``c = 0.03``, so a rule on that score may never fire, and what it measures would
  depend on the encoder's text-image alignment;
* **already retrieved**: a candidate whose id was already taken for this query, or
  whose vector is nearly identical (cosine > ``duplicate_threshold``) to a taken
  document or to the query document itself, is skipped; the query never retrieves
  itself (same non-empty id);
* **modality**: the query's text part and its image part are separate queries;
  ``num_by_text`` (2) documents are taken by text and ``num_by_image`` (2) by image.
  When the query lacks one part (a text prompt at inference), the other part takes
  both quotas;
* **query dropout** (training only): ``query_dropout`` (20%) of the query's text
  tokens are removed before encoding, deterministically from ``seed`` and the query;
* **training selection**: for training, ``train_select`` (3) of the retrieved
  documents are chosen at random per query (deterministic from ``seed``).

Inference (``training=False``) applies neither dropout, nor random selection, nor (by
default) the ``max_score`` cap: the result is the pool, best first, cut to ``k``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "MODALITIES",
    "Hit",
    "RetrievalStrategy",
    "drop_tokens",
    "interleave",
    "modality_quotas",
    "query_seed",
    "sample_subset",
    "select_candidates",
]

MODALITIES = ("text", "image")

T = TypeVar("T")


@dataclass
class RetrievalStrategy:
    """Every number of the §2.1 strategy (paper values as defaults).

    Attributes:
        num_by_text: documents retrieved with the query's text part.
        num_by_image: documents retrieved with the query's image part.
        max_score: skip candidates whose relevance to the query is above this (relevance
            1.0 = the query itself; see :meth:`~cm3leon.retrieval.retriever.Searcher.relevance`).
        max_score_at: when the ``max_score`` rule applies: ``training`` (the paper: §2.1
            states it for sampling documents "for the generator during training", where a
            near-copy of the query teaches nothing) or ``always`` (also at inference, where
            it removes the most relevant documents: measured on the demo's long-tail
            prompts, same-entity documents among k = 2 fell from 29/60 to 0/60 for the
            most frequent entities).
        duplicate_threshold: skip candidates whose cosine similarity to a taken document
            (or to the query document) is above this.
        query_dropout: fraction of the query's text tokens dropped before encoding
            (training only).
        train_select: documents chosen at random from the retrieved pool per query in
            training (the ``k`` used when ``retrieve(..., training=True)`` gets ``k=None``).
        search_depth: candidates fetched per modality query in the first search; the
            depth doubles for queries whose quota is not yet filled, up to the bank size.
        seed: seed of query dropout and training selection.
    """

    num_by_text: int = 2
    num_by_image: int = 2
    max_score: float = 0.9
    max_score_at: str = "training"
    duplicate_threshold: float = 0.98
    query_dropout: float = 0.2
    train_select: int = 3
    search_depth: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_by_text", "num_by_image", "train_select"):
            if getattr(self, name) < 0:
                raise ValueError(f"strategy.{name} must be >= 0, got {getattr(self, name)}")
        if self.num_by_text + self.num_by_image < 1:
            raise ValueError("strategy: num_by_text + num_by_image must be at least 1")
        if not 0.0 <= self.query_dropout < 1.0:
            raise ValueError(f"strategy.query_dropout must be in [0, 1), got {self.query_dropout}")
        if self.max_score_at not in ("training", "always"):
            raise ValueError(
                f"strategy.max_score_at must be 'training' or 'always', got {self.max_score_at!r}"
            )
        if self.search_depth < 1:
            raise ValueError(f"strategy.search_depth must be >= 1, got {self.search_depth}")

    @classmethod
    def from_options(cls, **options: Any) -> RetrievalStrategy:
        """Build from keyword options; unknown names raise ``TypeError`` listing the valid ones."""
        import dataclasses

        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise TypeError(f"unknown retriever option(s) {unknown}; strategy options: {', '.join(fields)}")
        return cls(**options)


@dataclass(frozen=True)
class Hit:
    """One retrieved document.

    Attributes:
        row: bank row.
        id: document id.
        score: search score given by the query part that found it (what candidates of
            one part are ranked by, best first).
        modality: that query part (``"text"`` or ``"image"``).
        relevance: relevance to the whole query, 1.0 = the query itself (what
            ``max_score`` is compared with).
    """

    row: int
    id: str
    score: float
    modality: str
    relevance: float


def query_seed(seed: int, key: str, purpose: str) -> int:
    """A stable per-query seed from the strategy seed, a query key and a purpose tag."""
    return (int(seed) * 1_000_003 + zlib.crc32(f"{purpose}\x00{key}".encode())) % (2**63)


def drop_tokens(tokens: Sequence[T], rate: float, rng: np.random.Generator) -> list[T]:
    """Drop ``round(rate * n)`` tokens at random (at least one token is kept).

    The order of the kept tokens is preserved.  With ``rate == 0`` or fewer than two
    tokens the input is returned unchanged (as a list).
    """
    n = len(tokens)
    n_drop = min(int(round(rate * n)), n - 1)
    if n_drop <= 0:
        return list(tokens)
    dropped = set(rng.choice(n, size=n_drop, replace=False).tolist())
    return [t for i, t in enumerate(tokens) if i not in dropped]


def sample_subset(items: Sequence[T], k: int, rng: np.random.Generator) -> list[T]:
    """``min(k, len(items))`` items chosen without replacement, in their original order."""
    if k >= len(items):
        return list(items)
    chosen = sorted(rng.choice(len(items), size=k, replace=False).tolist())
    return [items[i] for i in chosen]


def interleave(groups: Sequence[Sequence[T]]) -> list[T]:
    """Round-robin merge: first of each group, then second of each, ..."""
    out: list[T] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def modality_quotas(strategy: RetrievalStrategy, available: Sequence[str], k: int | None) -> dict[str, int]:
    """How many documents to take with each available query part.

    A missing part hands its quota to the available ones; when ``k`` exceeds the
    total, quotas grow proportionally so that the pool can hold ``k`` documents.
    """
    base = {"text": strategy.num_by_text, "image": strategy.num_by_image}
    avail = [m for m in MODALITIES if m in available]
    if not avail:
        return {}
    total = sum(base.values())
    quotas = {avail[0]: total} if len(avail) == 1 else {m: base[m] for m in avail}
    if k is not None and k > total:
        quotas = {m: math.ceil(k * q / total) for m, q in quotas.items()}
    return quotas


def select_candidates(
    rows: np.ndarray,
    scores: np.ndarray,
    *,
    quota: int,
    strategy: RetrievalStrategy,
    row_id: Callable[[int], str],
    taken_ids: set[str],
    taken_vectors: list[np.ndarray],
    vectors: Callable[[np.ndarray], np.ndarray],
    relevance: Callable[[np.ndarray], np.ndarray],
    modality: str,
) -> list[tuple[Hit, np.ndarray]]:
    """Walk candidates best first and keep up to ``quota`` that pass every rule.

    Args:
        rows: candidate bank rows ``(n,)``, best first (``-1`` entries are ignored).
        scores: their search scores ``(n,)`` (by the query part ``modality``).
        quota: how many to keep.
        strategy: thresholds.
        row_id: bank row -> document id.
        taken_ids: ids already taken for this query (including the query's own id);
            updated in place.
        taken_vectors: unit vectors of the query document and of taken documents;
            updated in place.
        vectors: bank rows -> unit vectors ``(n, D)`` (for the near-duplicate rule).
        relevance: bank rows -> relevance to the whole query ``(n,)``, 1.0 = the query
            itself (for the ``max_score`` rule).
        modality: which query part produced the candidates (recorded in the hits).

    Returns:
        ``(hit, vector)`` pairs in the order taken.
    """
    kept: list[tuple[Hit, np.ndarray]] = []
    valid = rows >= 0
    rows, scores = rows[valid], scores[valid]
    if quota <= 0 or rows.size == 0:
        return kept
    cand_vectors = vectors(rows)  # (n, D)
    cand_relevance = np.asarray(relevance(rows), dtype=np.float64)  # (n,)
    if cand_relevance.shape != rows.shape:
        raise ValueError(f"relevance of {rows.size} candidates has shape {cand_relevance.shape}")
    for row, score, rel, vec in zip(rows.tolist(), scores.tolist(), cand_relevance.tolist(), cand_vectors, strict=True):
        if len(kept) >= quota:
            break
        if rel > strategy.max_score:
            continue  # too similar to the query (relevance > 0.9; 1.0 = the query itself)
        doc_id = row_id(row)
        if doc_id in taken_ids:
            continue  # already retrieved (same document)
        if taken_vectors and float(np.max(np.stack(taken_vectors) @ vec)) > strategy.duplicate_threshold:
            continue  # near-identical to the query or to a taken document
        taken_ids.add(doc_id)
        taken_vectors.append(vec)
        hit = Hit(row=int(row), id=doc_id, score=float(score), modality=modality, relevance=float(rel))
        kept.append((hit, vec))
    return kept
