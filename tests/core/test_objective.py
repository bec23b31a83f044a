"""The CM3 objective: span helpers and transform on hand-written documents, plus properties."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cm3leon.core.documents import Document, ImageSegment
from cm3leon.core.objective import (
    CM3Config,
    CM3Dataset,
    SpanCount,
    SpanLength,
    cm3_example,
    cm3_inverse,
    cm3_rng,
    cm3_transform,
    infill_target_spans,
    mask_spans,
    maskable_runs,
    sample_num_spans,
    sample_spans,
)
from cm3leon.core.serialize import DocumentTokenizer
from cm3leon.core.tokenization import ByteTokenizer
from cm3leon.core.vocab import Vocabulary

VOCAB = Vocabulary(text_size=256, image_size=16, num_sentinels=4)
DT = DocumentTokenizer(VOCAB, ByteTokenizer(), tokens_per_image=4)


def names(ids) -> list[str]:
    return [VOCAB.token_name(int(i)) for i in ids]


def text_names(text: str) -> list[str]:
    return [f"text:{b}" for b in text.encode()]


def chameleon_example() -> np.ndarray:
    return DT.encode_example(Document.of("Image of a chameleon", ImageSegment(codes=(1, 2, 3, 4)), id="c"))


# ------------------------------------------------------- hand-written cases
def test_paper_example_caption_span() -> None:
    """§2.2: "Image of <mask>: [image] <infill> a chameleon"."""
    ids = chameleon_example()
    start = 1 + len("Image of ")
    out, _ = mask_spans(ids, [(start, start + len("a chameleon"))], VOCAB)
    assert names(out) == [
        "<eos>", *text_names("Image of "), "<mask:0>", "<break>", "img:1", "img:2", "img:3", "img:4",
        "<break>", "<infill:0>", *text_names("a chameleon"),
    ]
    assert np.array_equal(cm3_inverse(out, VOCAB), ids)


def test_whole_image_span_between_breaks() -> None:
    ids = chameleon_example()
    image_run = [r for r in maskable_runs(ids, VOCAB) if r.modality == "image"][0]
    out, _ = mask_spans(ids, [(image_run.start, image_run.end)], VOCAB)
    assert names(out) == [
        "<eos>", *text_names("Image of a chameleon"), "<break>", "<mask:0>", "<break>",
        "<infill:0>", "img:1", "img:2", "img:3", "img:4",
    ]
    assert np.array_equal(cm3_inverse(out, VOCAB), ids)


def test_two_spans_are_numbered_in_order() -> None:
    ids = chameleon_example()
    out, _ = mask_spans(ids, [(1, 6), (23, 25)], VOCAB)  # "Image", then img:2 img:3
    assert names(out) == [
        "<eos>", "<mask:0>", *text_names(" of a chameleon"), "<break>", "img:1", "<mask:1>", "img:4",
        "<break>", "<infill:0>", *text_names("Image"), "<infill:1>", "img:2", "img:3",
    ]


def test_maskable_runs_split_at_specials_and_modality() -> None:
    ids = chameleon_example()
    runs = maskable_runs(ids, VOCAB)
    assert [(r.start, r.end, r.modality) for r in runs] == [(1, 21, "text"), (22, 26, "image")]


def test_spans_crossing_break_or_holding_specials_are_refused() -> None:
    ids = chameleon_example()
    with pytest.raises(ValueError, match="contains <break> at position 21"):
        mask_spans(ids, [(18, 23)], VOCAB)
    with pytest.raises(ValueError, match="contains <eos> at position 0"):
        mask_spans(ids, [(0, 3)], VOCAB)
    with pytest.raises(ValueError, match="overlaps"):
        mask_spans(ids, [(1, 5), (4, 8)], VOCAB)
    with pytest.raises(ValueError, match="sentinels"):
        mask_spans(ids, [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)], VOCAB)


def test_weights_travel_with_their_tokens() -> None:
    ids = chameleon_example()
    weights = np.arange(ids.size, dtype=np.float32)
    out, w = mask_spans(ids, [(2, 4)], VOCAB, weights)
    assert w is not None and w.shape == out.shape
    # <mask:0> at 2 and <infill:0> take the span's first weight; moved tokens keep theirs.
    assert w[:3].tolist() == [0, 1, 2] and w[3] == 4 and w[-3:].tolist() == [2, 2, 3]


def test_transform_is_deterministic_in_seed_epoch_index() -> None:
    ids = chameleon_example()
    cfg = CM3Config()
    a = cm3_example(ids, VOCAB, cfg, seed=1, epoch=0, index=5)
    b = cm3_example(ids, VOCAB, cfg, seed=1, epoch=0, index=5)
    assert np.array_equal(a.tokens, b.tokens) and a.spans == b.spans
    draws = {tuple(cm3_example(ids, VOCAB, cfg, seed=1, epoch=e, index=5).spans) for e in range(20)}
    assert len(draws) > 5


def test_image_span_modes() -> None:
    ids = chameleon_example()
    image_run = [r for r in maskable_runs(ids, VOCAB) if r.modality == "image"][0]
    whole = CM3Config(image_spans="whole", num_spans=SpanCount(kind="fixed", value=4))
    none = CM3Config(image_spans="none", num_spans=SpanCount(kind="fixed", value=4))
    saw_image = False
    for i in range(200):
        for start, end in sample_spans(ids, VOCAB, whole, cm3_rng(0, 0, i)):
            if start >= image_run.start:
                saw_image = True
                assert (start, end) == (image_run.start, image_run.end)
        assert all(end <= image_run.start for _, end in sample_spans(ids, VOCAB, none, cm3_rng(0, 0, i)))
    assert saw_image


def test_number_of_spans_follows_clamped_poisson() -> None:
    dist, k = SpanCount(), VOCAB.num_sentinels  # Clamp(Poisson(1), 1, K)
    rng = np.random.default_rng(0)
    draws = np.array([sample_num_spans(rng, dist, k) for _ in range(20000)])
    pmf = [math.exp(-1) / math.factorial(n) for n in range(k)]
    expected = {1: pmf[0] + pmf[1], **{n: pmf[n] for n in range(2, k)}}
    expected[k] = 1 - sum(expected.values())
    assert draws.min() >= 1 and draws.max() <= k
    for n, p in expected.items():
        assert abs((draws == n).mean() - p) < 0.015, (n, (draws == n).mean(), p)


def test_span_lengths_follow_the_configured_distribution() -> None:
    tokens = VOCAB.text_to_global(np.arange(200) % 256)  # one long text run
    cfg = CM3Config(num_spans=SpanCount(kind="fixed", value=1), span_length=SpanLength(kind="poisson", lam=6))
    lengths = [e - s for i in range(2000) for s, e in sample_spans(tokens, VOCAB, cfg, cm3_rng(0, 0, i))]
    assert abs(np.mean(lengths) - 6) < 0.3
    fixed = CM3Config(num_spans=SpanCount(kind="fixed", value=3), span_length=SpanLength(kind="fixed", value=7))
    spans = sample_spans(tokens, VOCAB, fixed, cm3_rng(0, 0, 0))
    assert len(spans) == 3 and all(e - s == 7 for s, e in spans)


def vqa_example() -> tuple[np.ndarray, np.ndarray]:
    """A VQA document whose target is the answer field only ("red")."""
    text = "Question: what colour? The answer is red."
    a = text.index("red")
    doc = Document.of(text, ImageSegment(codes=(1, 2, 3, 4)), id="vqa",
                      meta={"targets": [{"segment": 0, "start": a, "end": a + 3}]})  # fmt: skip
    ex = DT.encode_example_with_targets(doc)
    return ex.ids, ex.targets


def test_target_prob_masks_exactly_the_answer_field() -> None:
    """The evaluation prompt's layout: "... is<mask:0>. <break> [image] <break> <infill:0> red"."""
    ids, targets = vqa_example()
    out = cm3_transform(ids, VOCAB, CM3Config(target_prob=1.0), cm3_rng(0), targets=targets)
    assert names(out.tokens) == [
        "<eos>", *text_names("Question: what colour? The answer is"), "<mask:0>", *text_names("."),
        "<break>", "img:1", "img:2", "img:3", "img:4", "<break>", "<infill:0>", *text_names(" red"),
    ]
    assert out.spans == [tuple(targets[0])]
    assert np.array_equal(cm3_inverse(out.tokens, VOCAB), ids)


def test_a_target_ending_the_example_stays_in_place() -> None:
    """An edited image at the end is already the continuation the decoder generates."""
    doc = Document.of("Edit", ImageSegment(codes=(1, 2, 3, 4)), "make it red", ImageSegment(codes=(4, 3, 2, 1)),
                      meta={"targets": [{"segment": 3}]})  # fmt: skip
    ex = DT.encode_example_with_targets(doc)
    assert names(ex.ids[ex.targets[0, 0] - 1 : ex.targets[0, 1] + 1]) == ["<break>", "img:4", "img:3", "img:2",
                                                                          "img:1", "<break>"]  # fmt: skip
    out = cm3_transform(ex.ids, VOCAB, CM3Config(target_prob=1.0), cm3_rng(0), targets=ex.targets)
    assert out.spans == [] and np.array_equal(out.tokens, ex.ids)
    both = np.array([[1, 5], *ex.targets])  # an infilled target plus the trailing one
    assert infill_target_spans(ex.ids, both, VOCAB) == [(1, 5)]


def test_target_prob_mixes_with_random_spans_and_is_off_by_default() -> None:
    ids, targets = vqa_example()
    exact = [tuple(t) for t in targets]
    half = CM3Config(target_prob=0.5)
    hits = sum(cm3_transform(ids, VOCAB, half, cm3_rng(0, 0, i), targets=targets).spans == exact for i in range(2000))
    assert 900 < hits < 1100  # the random spans practically never equal the answer field exactly
    for i in range(50):  # p = 0 draws exactly the spans of an example without targets (pretraining unchanged)
        plain = cm3_transform(ids, VOCAB, CM3Config(), cm3_rng(0, 0, i))
        with_t = cm3_transform(ids, VOCAB, CM3Config(), cm3_rng(0, 0, i), targets=targets)
        assert plain.spans == with_t.spans
    dataset = CM3Dataset([{"tokens": ids, "targets": targets, "id": "q"}], VOCAB, CM3Config(target_prob=1.0))
    assert names(dataset[0]["tokens"][-5:]) == ["<infill:0>", *text_names(" red")]


def test_bad_targets_are_errors_naming_the_sample() -> None:
    ids, _ = vqa_example()
    brk = int(np.flatnonzero(ids == VOCAB.break_id)[0])
    cfg = CM3Config(target_prob=1.0)
    with pytest.raises(ValueError, match=r"sample 4: task target span 0 .* contains <break>"):
        cm3_example(ids, VOCAB, cfg, seed=0, epoch=0, index=4, targets=[[brk - 2, brk + 2]])
    with pytest.raises(ValueError, match="overlaps"):
        cm3_example(ids, VOCAB, cfg, seed=0, epoch=0, index=4, targets=[[2, 6], [4, 8]])
    with pytest.raises(ValueError, match="target_prob"):
        CM3Config(target_prob=1.5)


def test_apply_prob_zero_leaves_examples_alone() -> None:
    ids = chameleon_example()
    out = cm3_transform(ids, VOCAB, CM3Config(apply_prob=0.0), cm3_rng(0))
    assert out.spans == [] and np.array_equal(out.tokens, ids)


# ----------------------------------------------------------------- bad input
def test_transform_rejects_bad_input() -> None:
    ids = chameleon_example()
    with pytest.raises(ValueError, match=f"sample 3: token id {VOCAB.size} at position 2 out of range"):
        cm3_example(np.array([1, 30, VOCAB.size]), VOCAB, CM3Config(), seed=0, epoch=0, index=3)
    masked, _ = mask_spans(ids, [(1, 3)], VOCAB)
    with pytest.raises(ValueError, match="already contains the CM3 sentinel <mask:0> at position 1"):
        cm3_transform(masked, VOCAB, CM3Config(), cm3_rng(0))
    with pytest.raises(ValueError, match="weights shape"):
        cm3_transform(ids, VOCAB, CM3Config(), cm3_rng(0), weights=np.ones(3))
    with pytest.raises(ValueError, match="image_spans"):
        CM3Config(image_spans="half")
    with pytest.raises(ValueError, match="seed must be non-negative"):
        cm3_rng(-1)


def test_inverse_rejects_malformed_sequences() -> None:
    ids = chameleon_example()
    masked, _ = mask_spans(ids, [(1, 3), (5, 6)], VOCAB)
    with pytest.raises(ValueError, match="do not match"):
        cm3_inverse(masked[:-3], VOCAB)  # lost the <infill:1> block
    with pytest.raises(ValueError, match="expected <infill:0>"):
        cm3_inverse(np.array([1, VOCAB.mask_id(0), 30, VOCAB.infill_id(1), 31]), VOCAB)


def test_cm3_dataset_wrapper_epochs() -> None:
    base = [chameleon_example(), {"tokens": chameleon_example(), "id": "b"}]
    ds = CM3Dataset(base, VOCAB, seed=3)
    first = [ds[i]["tokens"] for i in range(2)]
    assert ds[1]["id"] == "b" and np.array_equal(ds[0]["tokens"], first[0])
    epochs = set()
    for e in range(10):
        ds.set_epoch(e)
        epochs.add(tuple(ds[0]["tokens"].tolist()))
        assert np.array_equal(cm3_inverse(ds[0]["tokens"], VOCAB), base[0])
    assert len(epochs) > 1


# ---------------------------------------------------------------- properties
token = st.one_of(
    st.integers(VOCAB.text_offset, VOCAB.image_offset - 1),
    st.integers(VOCAB.image_offset, VOCAB.size - 1),
    st.sampled_from([VOCAB.break_id, VOCAB.break_id, VOCAB.unk_id, VOCAB.pad_id]),
)
configs = st.builds(
    CM3Config,
    num_spans=st.builds(SpanCount, kind=st.sampled_from(["poisson", "fixed", "uniform"]),
                        lam=st.floats(0, 4), value=st.integers(0, 6)),
    span_length=st.builds(SpanLength, kind=st.sampled_from(["uniform", "poisson", "geometric", "fixed"]),
                          lam=st.floats(1, 8), p=st.floats(0.05, 1), value=st.integers(1, 5)),
    image_spans=st.sampled_from(["any", "whole", "none"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(token, max_size=60), configs, st.integers(0, 2**32 - 1))
def test_transform_properties(body, cfg, seed) -> None:
    tokens = np.array([VOCAB.eos_id, *body], dtype=np.int64)
    result = cm3_transform(tokens, VOCAB, cfg, np.random.default_rng(seed))
    out, spans = result.tokens, result.spans
    k = len(spans)
    assert out.size == tokens.size + 2 * k and k <= VOCAB.num_sentinels
    # Every original token appears exactly once: the non-sentinel tokens are a permutation,
    # and the inverse puts each one back at its own position.
    sentinel = np.asarray(VOCAB.is_sentinel(out))
    assert Counter(out[~sentinel].tolist()) == Counter(tokens.tolist())
    assert sentinel.sum() == 2 * k
    assert np.array_equal(cm3_inverse(out, VOCAB), tokens)
    # No span crosses <break> (nor holds any special token); spans are disjoint and ordered.
    for (s, e), (s2, _) in zip(spans, [*spans[1:], (tokens.size, 0)], strict=False):
        assert 0 < s < e <= s2
        assert not np.asarray(VOCAB.is_special(tokens[s:e])).any()
        assert len({VOCAB.modality(int(t)) for t in tokens[s:e]}) == 1
    # Determinism given the seed.
    again = cm3_transform(tokens, VOCAB, cfg, np.random.default_rng(seed))
    assert np.array_equal(again.tokens, out)


@st.composite
def examples_with_targets(draw):
    """Random examples with random disjoint targets inside maskable runs."""
    tokens = np.array([VOCAB.eos_id, *draw(st.lists(token, max_size=60))], dtype=np.int64)
    targets = []
    for run in maskable_runs(tokens, VOCAB):
        if draw(st.booleans()) and len(targets) < VOCAB.num_sentinels:
            a = draw(st.integers(run.start, run.end - 1))
            targets.append((a, draw(st.integers(a + 1, run.end))))
    return tokens, np.array(targets, dtype=np.int64).reshape(-1, 2)


@settings(max_examples=300, deadline=None)
@given(examples_with_targets(), configs, st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_task_aware_transform_properties(example, cfg, p, seed) -> None:
    tokens, targets = example
    cfg.target_prob = p
    result = cm3_transform(tokens, VOCAB, cfg, np.random.default_rng(seed), targets=targets)
    out, spans = result.tokens, result.spans
    sentinel = np.asarray(VOCAB.is_sentinel(out))
    assert Counter(out[~sentinel].tolist()) == Counter(tokens.tolist())  # every token exactly once
    assert out.size == tokens.size + 2 * len(spans) and sentinel.sum() == 2 * len(spans)
    assert np.array_equal(cm3_inverse(out, VOCAB), tokens)
    for s, e in spans:  # never across <break>, never a special token
        assert not np.asarray(VOCAB.is_special(tokens[s:e])).any()
    if p == 1.0 and targets.size:
        assert spans == infill_target_spans(tokens, targets, VOCAB)
