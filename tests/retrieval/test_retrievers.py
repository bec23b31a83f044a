"""The retriever contract, run over every registered retriever (clip, bm25, plugins)."""

from __future__ import annotations

import numpy as np
import pytest

from cm3leon.core.documents import Document
from cm3leon.core.interfaces import Retriever
from cm3leon.core.plugin_manager import get_registries
from tests.retrieval.synthetic import render, shape_documents

# Memory-bank retrievers; evaluation oracles (memory_bank=False, e.g. eval's ``lookup``) have
# a contract of their own (tests/eval/test_lookup_retrieval.py).
NAMES = [n for n in get_registries().retrievers.names() if get_registries().retrievers.get(n).memory_bank]


def test_both_builtin_kinds_are_registered() -> None:
    assert {"clip", "bm25"} <= set(NAMES)


@pytest.fixture(scope="module")
def bank_docs() -> list[Document]:
    return shape_documents(60, seed=11, prefix="bank")


@pytest.fixture(scope="module", params=NAMES)
def retriever(request: pytest.FixtureRequest, bank_docs, tiny_encoder):
    spec = get_registries().retrievers.get(request.param)
    return spec.build(documents=bank_docs, encoder=tiny_encoder, seed=7)


def queries() -> list[Document]:
    return [
        Document.of("a red circle on the left", render("red", "circle", "left"), id="q-pair"),
        Document.of("a blue square", id="q-text"),
        Document.of("green triangle on the right", id="q-text-2"),
    ]


def test_satisfies_the_protocol(retriever) -> None:
    assert isinstance(retriever, Retriever)


def test_inference_returns_up_to_k_distinct_bank_documents(retriever, bank_docs) -> None:
    ids = {d.id for d in bank_docs}
    for k in (1, 2, 4):
        results = retriever.retrieve(queries(), k)
        assert len(results) == 3
        for q, docs in zip(queries(), results, strict=True):
            assert 1 <= len(docs) <= k
            got = [d.id for d in docs]
            assert len(set(got)) == len(got) and set(got) <= ids and q.id not in got
            assert all(isinstance(d, Document) for d in docs)


def test_k_zero_and_k_beyond_the_bank(retriever, bank_docs) -> None:
    assert retriever.retrieve(queries(), 0) == [[], [], []]
    big = retriever.retrieve(queries()[:1], len(bank_docs) + 50)[0]
    assert 0 < len(big) <= len(bank_docs)


def test_inference_is_deterministic_and_prefix_consistent(retriever) -> None:
    one = retriever.retrieve(queries(), 1)
    two = retriever.retrieve(queries(), 2)
    assert [[d.id for d in r] for r in two] == [[d.id for d in r] for r in retriever.retrieve(queries(), 2)]
    assert [r[0].id for r in one] == [r[0].id for r in two]


def test_training_mode_picks_train_select_deterministically(retriever) -> None:
    a = retriever.retrieve(queries(), training=True)
    b = retriever.retrieve(queries(), training=True)
    assert [[d.id for d in r] for r in a] == [[d.id for d in r] for r in b]
    assert all(len(r) == retriever.strategy.train_select for r in a)


def test_a_query_that_is_in_the_bank_never_retrieves_itself(retriever, bank_docs) -> None:
    results = retriever.retrieve(bank_docs[:10], 4)
    for q, docs in zip(bank_docs[:10], results, strict=True):
        assert q.id not in [d.id for d in docs]


def test_retrieved_documents_keep_their_content(retriever, bank_docs) -> None:
    by_id = {d.id: d for d in bank_docs}
    for docs in retriever.retrieve(queries(), 2):
        for d in docs:
            assert d == by_id[d.id]


def test_every_strategy_number_is_an_option(bank_docs, tiny_encoder) -> None:
    for name in NAMES:
        r = get_registries().retrievers.build(
            name, documents=bank_docs, encoder=tiny_encoder, num_by_text=1, num_by_image=0,
            max_score=0.5, max_score_at="always", train_select=1, query_dropout=0.0, duplicate_threshold=0.9,
            search_depth=3, seed=1,
        )
        s = r.strategy
        assert (s.num_by_text, s.num_by_image, s.max_score, s.train_select) == (1, 0, 0.5, 1)
        assert all(len(x) <= 1 for x in r.retrieve(queries()))
        hits = r.retrieve_hits(queries(), 1)
        assert all(h.relevance <= 0.5 for per in hits for h in per)
    with pytest.raises(TypeError):
        get_registries().retrievers.build("bm25", documents=bank_docs, not_an_option=1)


def test_scores_are_best_first_within_each_part(retriever) -> None:
    for hits in retriever.retrieve_hits(queries(), 4):
        for part in ("text", "image"):
            scores = [h.score for h in hits if h.modality == part]
            assert scores == sorted(scores, reverse=True)
            assert all(np.isfinite(scores))
