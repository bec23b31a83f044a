"""CIDEr-D equals coco-caption's (pycocoevalcap) on the same captions; gathered across ranks."""

from __future__ import annotations

import shutil

import pytest

from cm3leon.eval.metrics.cider import CiderD, cider_d, score_captions
from cm3leon.eval.metrics.ptb import PTBTokenizerError, ptb_tokenize
from tests.eval._helpers import two_rank_compute

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="PTB tokenisation needs Java")

CANDIDATES = [
    "A man, riding a horse!",
    "two dogs playing in the snow.",
    "a red car (parked) on the street",
    "A plate of food: rice, beans & salad...",
    "people walking down a busy city street",
    "a cat sitting on top of a wooden table",
    "A bathroom with a toilet, sink and mirror.",
    "it's a kite flying over the beach?",
]
REFERENCES = [
    [
        "A man rides a brown horse.",
        "Person on a horse; outdoors.",
        "a man riding a horse in a field",
    ],
    ["Two dogs play in snow.", "dogs, snow, fun!", "A pair of dogs in the snow"],
    ["A red car parked by the curb.", "red automobile on a street"],
    [
        "A plate with rice and beans.",
        "Food on a plate - rice, beans, and a salad.",
        "a dinner plate",
    ],
    ["A crowd of people on a city street.", "Pedestrians walk on a busy street."],
    ["A cat sits on a table.", "a tabby cat on top of a wooden table", "The cat's on the table."],
    ["A small bathroom with a sink, toilet and a mirror.", "white toilet next to a sink"],
    [
        "A kite flies over a sandy beach.",
        "kites in the sky at the beach",
        "Someone's flying a kite!",
    ],
]


@pytest.fixture(scope="module")
def coco_reference() -> tuple[float, list[float]]:
    """pycocoevalcap's own pipeline: PTBTokenizer, then Cider.compute_score."""
    pytest.importorskip("pycocoevalcap")
    if shutil.which("java") is None:
        pytest.skip("PTB tokenisation needs Java")
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: [{"caption": r} for r in refs] for i, refs in enumerate(REFERENCES)}
    res = {i: [{"caption": c}] for i, c in enumerate(CANDIDATES)}
    tokenizer = PTBTokenizer()
    score, scores = Cider().compute_score(tokenizer.tokenize(gts), tokenizer.tokenize(res))
    return float(score), [float(s) for s in scores]


@needs_java
def test_equals_pycocoevalcap(coco_reference) -> None:
    score, per_image = coco_reference
    ours = score_captions(CANDIDATES, REFERENCES)
    assert ours.score == pytest.approx(score, rel=1e-12)
    assert ours.per_item.tolist() == pytest.approx(per_image, rel=1e-12)
    assert 0.1 < ours.score < 10.0  # a real, non-degenerate corpus score


@needs_java
def test_metric_gathers_two_ranks_then_scores(coco_reference) -> None:
    score, _ = coco_reference

    def make(**kw):
        return CiderD(tokenizer="ptb", **kw)

    # Rank 1 repeats sample 0 with the same id (a distributed sampler's padding).
    merged = two_rank_compute(
        make,
        lambda m: m.update(CANDIDATES[:3], REFERENCES[:3], ids=[0, 1, 2]),
        lambda m: m.update(
            CANDIDATES[3:] + CANDIDATES[:1], REFERENCES[3:] + REFERENCES[:1], ids=[3, 4, 5, 6, 7, 0]
        ),
    )
    assert float(merged) == pytest.approx(score, rel=1e-12)
    # Per-rank scores differ from the corpus score: the IDF is a corpus statistic.
    alone = make()
    alone.update(CANDIDATES[:3], REFERENCES[:3])
    assert abs(float(alone.compute()) - score) > 1e-3


@needs_java
def test_ptb_tokenisation_like_coco() -> None:
    # coco-caption lower-cases inside CoreNLP, so brackets come out as -lrb-/-rrb- and
    # survive its (upper-case) punctuation filter; the comparison above proves it matches.
    assert ptb_tokenize(["A man, riding a horse!", "", "It's (parked) on the street..."]) == [
        "a man riding a horse",
        "",
        "it 's -lrb- parked -rrb- on the street",
    ]


def test_hand_worked_idf_and_clipping() -> None:
    # Two images; the candidate repeats "cat" and has one n-gram of every order in common
    # with its reference. Computed by hand from the definition (df from references only).
    import math

    cands = ["cat cat", "a dog"]
    refs = [["cat"], ["a dog"]]
    result = cider_d(cands, refs)
    # Image 1: unigram "cat": df=1 -> idf = log 2; candidate tf 2, reference tf 1.
    # clipped cosine = min(2i, i) * i / (2i * i) = 1/2 for n=1; orders 2..4: 0 (no
    # reference bigram -> zero norm); length (bigrams) 1 vs 0 -> penalty exp(-1/72).
    expected_1 = 10.0 * (0.5 * math.exp(-1.0 / 72.0)) / 4
    # Image 2: identical -> cosine 1 for orders 1, 2; orders 3, 4 are empty -> 0.
    expected_2 = 10.0 * (1.0 + 1.0) / 4
    assert result.per_item.tolist() == pytest.approx([expected_1, expected_2], rel=1e-12)
    assert result.score == pytest.approx((expected_1 + expected_2) / 2, rel=1e-12)


def test_missing_java_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr("cm3leon.eval.metrics.ptb.shutil.which", lambda name: None)
    with pytest.raises(PTBTokenizerError, match="needs Java: 'java' was not found on PATH"):
        score_captions(CANDIDATES, REFERENCES)


def test_whitespace_tokenizer_and_input_errors() -> None:
    metric = CiderD(tokenizer="whitespace")
    metric.update(["a b c", "d e"], [["a b c"], ["d e f", "d"]])
    assert float(metric.compute()) == pytest.approx(
        score_captions(["a b c", "d e"], [["a b c"], ["d e f", "d"]], tokenizer="whitespace").score
    )
    with pytest.raises(ValueError, match="sample 0: references must be a non-empty list"):
        metric.update(["x"], [[]])
    with pytest.raises(ValueError, match="unknown caption tokenizer 'spacy'"):
        CiderD(tokenizer="spacy")
    with pytest.raises(ValueError, match="2 candidates but 1 reference lists"):
        cider_d(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="different records share id=1"):
        m = CiderD(tokenizer="whitespace")
        m.update(["a", "b"], [["a"], ["b"]], ids=[1, 1])
        m.compute()
