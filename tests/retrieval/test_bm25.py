"""BM25 over captions: the formula, normalised scores, persistence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.documents import Document
from cm3leon.retrieval.bank import BankError
from cm3leon.retrieval.bm25 import BM25Bank, bm25_retriever, tokenize_words
from cm3leon.retrieval.index import IndexIntegrityError

CORPUS = [
    "the red circle is left of the blue square",
    "a red square",
    "a green triangle on the right",
    "blue blue blue square",
    "an image without shared words",
]


def docs() -> list[Document]:
    return [Document.of(t, id=f"c{i}") for i, t in enumerate(CORPUS)]


def reference_bm25(query: str, doc: str, corpus: list[str], k1: float = 1.5, b: float = 0.75) -> float:
    toks = [tokenize_words(t) for t in corpus]
    n, avgdl = len(toks), sum(map(len, toks)) / len(toks)
    d = tokenize_words(doc)
    score = 0.0
    for term in tokenize_words(query):
        df = sum(term in t for t in toks)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        tf = d.count(term)
        score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avgdl))
    return score


def test_scores_match_the_okapi_formula_normalised_by_self_score() -> None:
    bank = BM25Bank.build(docs())
    q = "red square blue"
    raw = np.array([reference_bm25(q, t, CORPUS) for t in CORPUS])
    # Self score: the query as if it were a bank document (same idf and avgdl).
    toks = [tokenize_words(t) for t in CORPUS]
    n, avgdl = len(toks), sum(map(len, toks)) / len(toks)
    qt = tokenize_words(q)
    self_score = sum(
        math.log(1 + (n - sum(w in t for t in toks) + 0.5) / (sum(w in t for t in toks) + 0.5))
        * qt.count(w) * (1.5 + 1) / (qt.count(w) + 1.5 * (1 - 0.75 + 0.75 * len(qt) / avgdl))
        for w in set(qt)
    )
    np.testing.assert_allclose(bank.score(tokenize_words(q)), raw / self_score, rtol=1e-5)


def test_a_verbatim_copy_scores_one_and_is_skipped_as_too_similar() -> None:
    bank = BM25Bank.build(docs())
    assert bank.score(tokenize_words(CORPUS[2]))[2] == pytest.approx(1.0, rel=1e-5)
    query = [Document.of(CORPUS[2], id="new")]
    assert "c2" not in [d.id for d in bm25_retriever(bank, duplicate_threshold=1.1, max_score_at="always").retrieve(query, 3)[0]]
    lenient = bm25_retriever(bank, max_score=1.5, duplicate_threshold=1.1)
    assert lenient.retrieve(query, 1)[0][0].id == "c2"


def test_relevance_is_the_normalised_score_of_the_query_without_dropout() -> None:
    r = bm25_retriever(documents=docs(), query_dropout=0.5, seed=3, duplicate_threshold=1.1)
    query = [Document.of(CORPUS[0], id="new")]
    clean = r.searcher.bank.score(tokenize_words(CORPUS[0]))
    for hit in r.retrieve_hits(query, 4)[0]:  # inference: relevance is the search score
        assert hit.relevance == pytest.approx(hit.score) == pytest.approx(clean[hit.row])
    # Training: the search uses the dropped words, the rule reads the whole query, so the
    # verbatim copy (relevance 1) is skipped whichever words were dropped.
    lenient = bm25_retriever(documents=docs(), query_dropout=0.5, seed=3, duplicate_threshold=1.1,
                             max_score=1.5)
    pool = lenient.retrieve_hits(query, 4, training=True)[0]
    copy = next(h for h in pool if h.id == "c0")
    assert copy.relevance == pytest.approx(1.0, rel=1e-5) and copy.score != pytest.approx(1.0)
    assert all(h.relevance == pytest.approx(clean[h.row]) for h in pool)
    assert "c0" not in [h.id for h in r.retrieve_hits(query, 4, training=True)[0]]


def test_documents_without_shared_words_are_not_candidates() -> None:
    r = bm25_retriever(documents=docs())
    got = r.retrieve([Document.of("triangle", id="q")], 4)[0]
    assert [d.id for d in got] == ["c2"]
    assert r.retrieve([Document.of("zebra", id="q")], 4) == [[]]


def test_image_only_queries_get_nothing() -> None:
    from tests.retrieval.synthetic import render

    r = bm25_retriever(documents=docs())
    assert r.retrieve([Document.of(render("red", "circle", "left"))], 2) == [[]]


def test_word_dropout_in_training() -> None:
    r = bm25_retriever(documents=docs(), query_dropout=0.5, seed=3)
    enc = r.searcher.encode_queries([Document.of("red circle blue square green triangle")], dropout=0.5, seeds=[9])
    assert len(enc.parts["text"][0]) == 3


def test_save_load_round_trip_and_tampering(tmp_path: Path) -> None:
    bank = BM25Bank.build(docs())
    path = bank.save(tmp_path / "bm25")
    loaded = BM25Bank.load(path)
    q = tokenize_words("blue square")
    np.testing.assert_allclose(loaded.score(q), bank.score(q))
    assert loaded.store.get([3]) == [docs()[3]]
    assert bm25_retriever(path).retrieve([Document.of("blue square", id="q")], 2)[0][0].id in {"c3", "c1", "c0"}
    with pytest.raises(BankError, match="a 'bm25' bank, expected a 'faiss' bank"):
        from cm3leon.retrieval.bank import MemoryBank

        MemoryBank.load(path)
    with open(path / "bm25.npz", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(IndexIntegrityError, match="bm25.npz"):
        BM25Bank.load(path)
