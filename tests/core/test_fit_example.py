"""Fitting retrieval-augmented examples to a row: drop retrieved documents, never the query."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cm3leon.core.documents import Document, ImageSegment
from cm3leon.core.serialize import DocumentTokenizer, document_ranges, fit_example, join_documents
from cm3leon.core.tokenization import ByteTokenizer
from cm3leon.core.vocab import Vocabulary

VOCAB = Vocabulary(text_size=256, image_size=16, num_sentinels=4)
DT = DocumentTokenizer(VOCAB, ByteTokenizer(), tokens_per_image=4)
IMG = ImageSegment(codes=(1, 2, 3, 4))
DOCS = {
    "pair": Document.of("a red cube", IMG, id="pair"),  # text first
    "image_first": Document.of(IMG, "a blue ball", id="image_first"),
    "text": Document.of("plain text only", id="text"),
    "image_end": Document.of("two", IMG, "images", IMG, id="image_end"),
}


@pytest.mark.parametrize("order", list(itertools.permutations(DOCS, 3)))
def test_document_ranges_slice_each_document_back(order) -> None:
    parts = [DT.encode(DOCS[name]) for name in order]
    ids, starts = join_documents(parts, VOCAB)
    ranges = document_ranges(parts, VOCAB)
    for part, (s, e) in zip(parts, ranges, strict=True):
        assert np.array_equal(ids[s:e], part)
    assert ranges[-1, 1] == ids.size and ranges[0, 0] == 1


@pytest.mark.parametrize("order", list(itertools.permutations(DOCS, 4)))
def test_fitting_drops_retrieved_documents_last_first(order) -> None:
    *retrieved, query = (DOCS[name] for name in order)
    full = DT.encode_example_with_targets(query, retrieved)
    parts = [DT.encode(d) for d in (*retrieved, query)]
    for keep in range(len(retrieved) + 1):
        expected = join_documents([*parts[:keep], parts[-1]], VOCAB)[0]
        fitted = fit_example(full.ids, full.parts, expected.size, VOCAB)
        assert np.array_equal(fitted.ids, expected), (order, keep)
        assert fitted.dropped == len(retrieved) - keep or fitted.ids.size < expected.size
    untouched = fit_example(full.ids, full.parts, full.ids.size, VOCAB)
    assert untouched.dropped == 0 and untouched.ids is full.ids


def test_weights_and_targets_travel_with_the_query() -> None:
    tok = DocumentTokenizer(VOCAB, ByteTokenizer(), tokens_per_image=4, query_loss_weight=2.0)
    query = Document.of("Q: colour? A: red.", IMG, id="q", meta={"targets": [{"segment": 0, "start": 14, "end": 18}]})
    retrieved = [DOCS["pair"], DOCS["image_first"]]
    full = tok.encode_example_with_targets(query, retrieved)
    alone = tok.encode_example_with_targets(query, retrieved[:1])
    fitted = fit_example(full.ids, full.parts, alone.ids.size, VOCAB, weights=full.weights, targets=full.targets)
    assert fitted.dropped == 1
    assert np.array_equal(fitted.ids, alone.ids)
    assert np.array_equal(fitted.weights, alone.weights)
    assert np.array_equal(fitted.targets, alone.targets)
    (s, e), = fitted.targets.tolist()
    assert VOCAB.is_text(fitted.ids[s:e]).all() and e <= fitted.ids.size


def test_a_query_that_alone_does_not_fit_is_an_error_naming_the_sample() -> None:
    full = DT.encode_example_with_targets(DOCS["image_end"], [DOCS["pair"]])
    with pytest.raises(ValueError, match=r"sample 7: the query document alone is \d+ tokens .* budget of 5"):
        fit_example(full.ids, full.parts, 5, VOCAB, where="sample 7")


def test_ranges_that_do_not_describe_the_example_are_refused() -> None:
    full = DT.encode_example_with_targets(DOCS["pair"], [DOCS["text"], DOCS["image_first"]])
    bad = full.parts.copy()
    bad[1, 0] += 2
    with pytest.raises(ValueError, match="document ranges .* do not describe"):
        fit_example(full.ids, bad, 10, VOCAB)
