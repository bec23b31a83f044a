"""The §2.1 rules on hand-made vectors: every rule is checked where it bites."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cm3leon.core.documents import Document
from cm3leon.retrieval.retriever import QueryEncoding, StrategyRetriever
from cm3leon.retrieval.strategy import (
    RetrievalStrategy,
    drop_tokens,
    interleave,
    modality_quotas,
    sample_subset,
)


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


class VectorSearcher:
    """Exact MIPS over given unit vectors; queries carry their part and document vectors in ``meta``."""

    def __init__(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        self.bank = np.asarray(vectors, dtype=np.float32)
        self.ids = list(ids)
        self.seen_dropout: list[tuple[float, Any]] = []
        self.searches: list[tuple[str, int]] = []

    @property
    def size(self) -> int:
        return len(self.ids)

    def encode_queries(self, queries, *, dropout, seeds):
        self.seen_dropout.append((dropout, seeds))
        parts = {
            m: [np.asarray(q.meta[m], np.float32) if m in q.meta else None for q in queries]
            for m in ("text", "image")
        }
        vecs = np.stack([np.asarray(q.meta.get("doc", np.zeros(self.bank.shape[1])), np.float32) for q in queries])
        return QueryEncoding(parts=parts, vectors=vecs)

    def search(self, modality, encoded, k):
        self.searches.append((modality, k))
        scores = np.stack(encoded) @ self.bank.T  # (Q, N)
        rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, rows, 1), rows

    def vectors(self, rows):
        return self.bank[np.asarray(rows, dtype=np.int64)]

    def relevance(self, encoded, query, rows):
        return self.vectors(rows) @ encoded.vectors[query]  # cosine with the query document

    def row_id(self, row):
        return self.ids[row]

    def documents(self, rows):
        return [Document.of(f"doc {self.ids[r]}", id=self.ids[r]) for r in rows]


def query(text=None, image=None, doc=None, id="q") -> Document:
    meta: dict[str, Any] = {}
    if text is not None:
        meta["text"] = list(map(float, text))
    if image is not None:
        meta["image"] = list(map(float, image))
    if doc is not None:
        meta["doc"] = list(map(float, doc))
    return Document.of("query", id=id, meta=meta)


# ------------------------------------------------------------------ helpers


def test_drop_tokens_rate_is_exact_and_order_kept() -> None:
    tokens = list(range(50))
    kept = drop_tokens(tokens, 0.2, np.random.default_rng(0))
    assert len(kept) == 40
    assert kept == sorted(kept) and set(kept) <= set(tokens)
    assert drop_tokens(tokens, 0.0, np.random.default_rng(0)) == tokens
    assert drop_tokens([7], 0.5, np.random.default_rng(0)) == [7]  # never empties a query


def test_drop_tokens_is_deterministic_by_seed() -> None:
    tokens = list(range(30))
    a = drop_tokens(tokens, 0.2, np.random.default_rng(5))
    b = drop_tokens(tokens, 0.2, np.random.default_rng(5))
    c = drop_tokens(tokens, 0.2, np.random.default_rng(6))
    assert a == b and a != c


def test_dropout_rate_over_many_queries() -> None:
    rng = np.random.default_rng(1)
    counts = [len(drop_tokens(list(range(n)), 0.2, rng)) for n in range(5, 60)]
    dropped = sum(range(5, 60)) - sum(counts)
    assert dropped / sum(range(5, 60)) == pytest.approx(0.2, abs=0.01)


def test_sample_subset_and_interleave() -> None:
    items = list("abcdef")
    sub = sample_subset(items, 3, np.random.default_rng(0))
    assert len(sub) == 3 and sub == sorted(sub)
    assert sample_subset(items, 10, np.random.default_rng(0)) == items
    assert interleave([[1, 3, 5], [2]]) == [1, 2, 3, 5]


def test_quotas_follow_the_available_parts() -> None:
    s = RetrievalStrategy()
    assert modality_quotas(s, ["text", "image"], None) == {"text": 2, "image": 2}
    assert modality_quotas(s, ["text"], None) == {"text": 4}
    assert modality_quotas(s, ["image"], 2) == {"image": 4}
    assert modality_quotas(s, ["text", "image"], 10) == {"text": 5, "image": 5}
    assert modality_quotas(s, [], 2) == {}


def test_strategy_validates_numbers() -> None:
    with pytest.raises(ValueError, match="query_dropout"):
        RetrievalStrategy(query_dropout=1.5)
    with pytest.raises(ValueError, match="num_by_text"):
        RetrievalStrategy(num_by_text=-1)


# -------------------------------------------------------------------- rules


def test_candidates_more_relevant_than_max_score_are_skipped() -> None:
    q = unit(1, 0, 0)
    # Cosines with the query document q: 0.99 (too similar), 0.95 (too similar), 0.85, 0.6
    bank = np.stack([unit(0.99, np.sqrt(1 - 0.99**2), 0), unit(0.95, 0, np.sqrt(1 - 0.95**2)),
                     unit(0.85, -np.sqrt(1 - 0.85**2), 0), unit(0.6, 0, -0.8)])
    r = StrategyRetriever(VectorSearcher(bank, ["a", "b", "c", "d"]), RetrievalStrategy(duplicate_threshold=1.0, max_score_at="always"))
    hits = r.retrieve_hits([query(text=q, doc=q)], k=2)[0]
    assert [h.id for h in hits] == ["c", "d"]
    assert all(h.relevance <= 0.9 for h in hits)
    # The threshold is a setting, not a constant.
    r2 = StrategyRetriever(VectorSearcher(bank, ["a", "b", "c", "d"]),
                           RetrievalStrategy(max_score=0.96, duplicate_threshold=1.0, max_score_at="always"))
    assert [h.id for h in r2.retrieve_hits([query(text=q, doc=q)], k=2)[0]] == ["b", "c"]


def test_the_relevance_cap_is_a_training_rule_by_default() -> None:
    """§2.1 states "relevance <= 0.9" for sampling documents during training; at inference
    the most relevant documents are the point of retrieval."""
    q = unit(1, 0, 0)
    bank = np.stack([unit(0.95, 0, np.sqrt(1 - 0.95**2)), unit(0.85, -np.sqrt(1 - 0.85**2), 0),
                     unit(0.6, 0, -0.8)])
    r = StrategyRetriever(VectorSearcher(bank, ["near", "mid", "far"]),
                          RetrievalStrategy(duplicate_threshold=1.0, train_select=3))
    assert [h.id for h in r.retrieve_hits([query(text=q, doc=q)], k=2)[0]] == ["near", "mid"]
    trained = r.retrieve_hits([query(text=q, doc=q)], k=3, training=True)[0]
    assert "near" not in [h.id for h in trained] and {h.id for h in trained} == {"mid", "far"}
    always = StrategyRetriever(VectorSearcher(bank, ["near", "mid", "far"]),
                               RetrievalStrategy(duplicate_threshold=1.0, max_score_at="always"))
    assert [h.id for h in always.retrieve_hits([query(text=q, doc=q)], k=2)[0]] == ["mid", "far"]
    with pytest.raises(ValueError, match="max_score_at must be 'training' or 'always'"):
        RetrievalStrategy(max_score_at="never")


def test_the_rule_reads_relevance_not_the_search_score() -> None:
    # The text part finds "copy" with score 0.71 only, but as a whole it is the query.
    t, i = unit(1, 0, 0), unit(0, 1, 0)
    doc = unit(1, 1, 0)
    bank = np.stack([doc, unit(1, 0, 1), unit(0, 1, 1)])
    r = StrategyRetriever(VectorSearcher(bank, ["copy", "a", "b"]),
                          RetrievalStrategy(num_by_text=1, num_by_image=1, duplicate_threshold=1.1,
                                            max_score_at="always"))
    hits = r.retrieve_hits([query(text=t, image=i, doc=doc)])[0]
    assert [(h.id, h.modality) for h in hits] == [("a", "text"), ("b", "image")]
    assert [h.score for h in hits] == pytest.approx([np.sqrt(0.5)] * 2)
    assert [h.relevance for h in hits] == pytest.approx([0.5, 0.5])
    lenient = StrategyRetriever(VectorSearcher(bank, ["copy", "a", "b"]),
                                RetrievalStrategy(num_by_text=1, num_by_image=1, max_score=1.1,
                                                  duplicate_threshold=1.1))
    first = lenient.retrieve_hits([query(text=t, image=i, doc=doc)])[0][0]
    assert (first.id, first.relevance) == ("copy", pytest.approx(1.0))


def test_a_searcher_without_relevance_is_refused() -> None:
    inner = VectorSearcher(np.eye(2, dtype=np.float32), ["a", "b"])
    methods = ("encode_queries", "search", "vectors", "row_id", "documents")
    old_style = SimpleNamespace(size=inner.size, **{m: getattr(inner, m) for m in methods})
    with pytest.raises(TypeError, match="'mine'.* lacks relevance"):
        StrategyRetriever(old_style, name="mine")


def test_duplicates_by_id_and_by_embedding_are_skipped() -> None:
    q = unit(1, 0, 0)
    v1 = unit(0.8, 0.6, 0)
    v1_copy = unit(0.8, 0.6001, 0)  # near-identical vector, different id
    v2 = unit(0.7, 0, 0.71)
    bank = np.stack([v1, v1, v1_copy, v2])
    ids = ["x", "x", "x-copy", "y"]  # row 1 repeats id "x"
    r = StrategyRetriever(VectorSearcher(bank, ids), RetrievalStrategy())
    hits = r.retrieve_hits([query(text=q)], k=2)[0]
    assert [h.id for h in hits] == ["x", "y"]


def test_the_query_never_retrieves_itself() -> None:
    q = unit(1, 0.2, 0)
    bank = np.stack([unit(0.8, 0.6, 0), unit(0.5, 0.86, 0), unit(0.6, 0.1, 0.79)])
    ids = ["q", "other", "copy-of-q"]
    # "copy-of-q" has a different id but its vector equals the query document's.
    doc_vec = unit(0.6, 0.1, 0.79)
    r = StrategyRetriever(VectorSearcher(bank, ids), RetrievalStrategy())
    hits = r.retrieve_hits([query(text=q, doc=doc_vec, id="q")], k=3)[0]
    assert [h.id for h in hits] == ["other"]


def test_two_by_text_and_two_by_image() -> None:
    t, i = unit(1, 0, 0, 0), unit(0, 1, 0, 0)
    bank = np.stack([
        unit(0.8, 0.1, 0.59, 0), unit(0.75, 0.05, 0, 0.66), unit(0.7, 0.1, 0, -0.7),  # text-like
        unit(0.1, 0.85, 0, 0.52), unit(0.05, 0.8, 0.6, 0), unit(0.1, 0.7, 0.1, 0.7),  # image-like
    ])
    ids = ["t1", "t2", "t3", "i1", "i2", "i3"]
    r = StrategyRetriever(VectorSearcher(bank, ids), RetrievalStrategy())
    hits = r.retrieve_hits([query(text=t, image=i)], k=4)[0]
    assert [(h.id, h.modality) for h in hits] == [("t1", "text"), ("i1", "image"), ("t2", "text"), ("i2", "image")]
    # A text-only query takes both quotas with its text part.
    hits = r.retrieve_hits([query(text=t)], k=None)[0]
    assert [h.modality for h in hits] == ["text"] * 4
    # Quotas are settings.
    r31 = StrategyRetriever(VectorSearcher(bank, ids), RetrievalStrategy(num_by_text=3, num_by_image=1))
    assert [h.id for h in r31.retrieve_hits([query(text=t, image=i)])[0]] == ["t1", "i1", "t2", "t3"]


def test_documents_taken_by_text_are_not_taken_again_by_image() -> None:
    t, i = unit(1, 0, 0), unit(0.9, 0.44, 0)
    bank = np.stack([unit(0.8, 0.3, 0.52), unit(0.5, 0.5, 0.71), unit(0.2, 0.1, 0.97)])
    r = StrategyRetriever(VectorSearcher(bank, ["a", "b", "c"]),
                          RetrievalStrategy(num_by_text=1, num_by_image=1))
    hits = r.retrieve_hits([query(text=t, image=i)])[0]
    assert [h.id for h in hits] == ["a", "b"]


def test_training_selects_three_of_the_pool_deterministically() -> None:
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(40, 8)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    searcher = VectorSearcher(bank, [f"d{j}" for j in range(40)])
    r = StrategyRetriever(searcher, RetrievalStrategy(seed=11, query_dropout=0.0))
    queries = [query(text=bank[j] * 0.7 + bank[j + 1] * 0.3, image=bank[j + 2], id=f"q{j}") for j in range(20)]
    pools = r.retrieve_hits(queries, k=None, training=False)
    picks = r.retrieve_hits(queries, k=None, training=True)
    again = r.retrieve_hits(queries, k=None, training=True)
    assert [[h.id for h in p] for p in picks] == [[h.id for h in p] for p in again]
    subsets = set()
    for pool, pick in zip(pools, picks, strict=True):
        assert len(pool) == 4 and len(pick) == 3
        assert [h.id for h in pick] == [h.id for h in pool if h in pick]  # a subset, order kept
        subsets.add(tuple(pool.index(h) for h in pick))
    assert len(subsets) > 1  # which 3 of the 4 varies across queries
    other_seed = StrategyRetriever(searcher, RetrievalStrategy(seed=12, query_dropout=0.0))
    assert [[h.id for h in p] for p in other_seed.retrieve_hits(queries, training=True)] != [
        [h.id for h in p] for p in picks
    ]


def test_dropout_is_requested_only_in_training() -> None:
    bank = np.eye(4, dtype=np.float32)
    searcher = VectorSearcher(bank, list("abcd"))
    r = StrategyRetriever(searcher, RetrievalStrategy(query_dropout=0.2, seed=3))
    q = [query(text=unit(1, 0.5, 0, 0), id="q1"), query(text=unit(0, 1, 0.5, 0), id="q2")]
    r.retrieve_hits(q, k=2)
    assert searcher.seen_dropout[-1] == (0.0, None)
    r.retrieve_hits(q, k=2, training=True)
    rate, seeds = searcher.seen_dropout[-1]
    assert rate == 0.2 and len(seeds) == 2 and seeds[0] != seeds[1]
    r.retrieve_hits(q, k=2, training=True)
    assert searcher.seen_dropout[-1][1] == seeds  # same queries, same dropout


def test_k_larger_than_the_bank_returns_what_exists() -> None:
    bank = np.stack([unit(1, 0.3, 0), unit(0.2, 1, 0), unit(0.1, 0.2, 1)])
    searcher = VectorSearcher(bank, ["a", "b", "c"])
    r = StrategyRetriever(searcher, RetrievalStrategy())
    hits = r.retrieve_hits([query(text=unit(1, 1, 1))], k=10)[0]
    assert sorted(h.id for h in hits) == ["a", "b", "c"]
    assert all(k <= 3 for _, k in searcher.searches)  # never asks the index for more rows than it has
    assert r.retrieve([query(text=unit(1, 1, 1))], k=0) == [[]]
    with pytest.raises(ValueError, match="k must be >= 0"):
        r.retrieve([query(text=unit(1, 1, 1))], k=-1)


def test_search_deepens_until_quota_is_filled() -> None:
    # The 20 best candidates are all near-copies of the query (> 0.9); the rest are fine.
    q = unit(1, 0, 0)
    close = [unit(1, 0.01 * j, 0.02) for j in range(20)]
    far = [unit(0.5, 0.1 * j, 0.8) for j in range(1, 5)]
    ids = [f"c{j}" for j in range(20)] + [f"f{j}" for j in range(4)]
    searcher = VectorSearcher(np.stack(close + far), ids)
    r = StrategyRetriever(searcher, RetrievalStrategy(search_depth=4, duplicate_threshold=0.999, max_score_at="always"))
    hits = r.retrieve_hits([query(text=q, doc=q)], k=2)[0]
    assert len(hits) == 2 and all(h.id.startswith("f") for h in hits)
    assert [k for _, k in searcher.searches] == [4, 8, 16, 24]


def test_retrieve_returns_documents_in_hit_order() -> None:
    bank = np.stack([unit(1, 0.5, 0), unit(0.3, 1, 0), unit(0, 0.4, 1)])
    r = StrategyRetriever(VectorSearcher(bank, ["a", "b", "c"]), RetrievalStrategy())
    qs = [query(text=unit(1, 0.4, 0.1), id="q1"), query(text=unit(0, 0.3, 1), id="q2")]
    docs = r.retrieve(qs, k=2)
    hits = r.retrieve_hits(qs, k=2)
    assert [[d.id for d in per] for per in docs] == [[h.id for h in per] for per in hits]
