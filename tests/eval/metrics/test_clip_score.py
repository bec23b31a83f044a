"""CLIP score = 100 * max(cos, 0) per pair, averaged; exact across ranks."""

from __future__ import annotations

import numpy as np
import pytest

from cm3leon.eval.metrics.clip_score import CLIPScore, clip_scores
from tests.eval._helpers import StandInEncoder, solid, two_rank_compute

IMAGES = [solid((255, 0, 0)), solid((255, 128, 128)), solid((0, 255, 255)), solid((0, 0, 255))]
TEXTS = ["a red square", "red", "a red thing", "blue and green"]


def _by_hand(image_rgb, text_rgb) -> float:
    a = np.array([*(np.asarray(image_rgb) / 255.0 - 0.5), 0.05])
    b = np.array([*(np.asarray(text_rgb) - 0.5), 0.05])
    return 100.0 * max(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), 0.0)


EXPECTED = [
    _by_hand((255, 0, 0), (1, 0, 0)),
    _by_hand((255, 128, 128), (1, 0, 0)),
    _by_hand((0, 255, 255), (1, 0, 0)),  # opposite colour: negative cosine, clipped to 0
    _by_hand((0, 0, 255), (0, 0.5, 0.5)),
]


def test_per_pair_scores_match_hand_computation() -> None:
    scores = clip_scores(StandInEncoder(), IMAGES, TEXTS)
    np.testing.assert_allclose(scores.numpy(), EXPECTED, rtol=1e-6)
    assert scores[0] == pytest.approx(100.0, rel=1e-6) and scores[2] == 0.0
    assert 0.0 < scores[1] < 100.0 and 0.0 < scores[3] < 100.0


def test_metric_mean_and_two_ranks() -> None:
    metric = CLIPScore(StandInEncoder())
    metric.update(IMAGES[:3], TEXTS[:3])
    metric.update(IMAGES[3:], TEXTS[3:])
    assert float(metric.compute()) == pytest.approx(np.mean(EXPECTED), rel=1e-6)
    merged = two_rank_compute(
        lambda **kw: CLIPScore(StandInEncoder(), **kw),
        lambda m: m.update(IMAGES[:1], TEXTS[:1]),
        lambda m: m.update(IMAGES[1:], TEXTS[1:]),
    )
    assert float(merged) == pytest.approx(np.mean(EXPECTED), rel=1e-6)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric CLIPScore was called before")
def test_errors() -> None:
    with pytest.raises(ValueError, match="as many texts as images: 1 vs 2"):
        clip_scores(StandInEncoder(), IMAGES[:2], TEXTS[:1])
    with pytest.raises(ValueError, match="before any update"):
        CLIPScore(StandInEncoder()).compute()
