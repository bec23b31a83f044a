"""Model-free baselines: nearest caption by pixel distance, majority answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cm3leon.eval.baselines import (
    downsampled_pixels,
    majority_answer,
    majority_answers_by_type,
    nearest_captions,
)
from cm3leon.eval.formats import FormatError


def _solid(path: Path, rgb: tuple[int, int, int], size: int = 16) -> Path:
    Image.new("RGB", (size, size), rgb).save(path)
    return path


def test_nearest_captions_by_pixel_distance(tmp_path: Path) -> None:
    train = [
        _solid(tmp_path / f"t{i}.png", c)
        for i, c in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    ]
    caps = ["a red square", "a green square", "a blue square"]
    queries = [
        _solid(tmp_path / "q0.png", (180, 20, 20), 32),
        _solid(tmp_path / "q1.png", (10, 30, 200)),
    ]
    assert nearest_captions(queries, train, caps, size=4) == [
        (0, "a red square"),
        (2, "a blue square"),
    ]
    # ties go to the first training image; batches give the same answer
    dup = [train[1], train[1]]
    assert nearest_captions(queries, dup, ["first", "second"], batch=1) == [
        (0, "first"),
        (0, "first"),
    ]
    with pytest.raises(ValueError, match="one caption each"):
        nearest_captions(queries, train, caps[:2])


def test_downsampled_pixels_box_filter(tmp_path: Path) -> None:
    im = np.zeros((4, 4, 3), np.uint8)
    im[:, :2] = 255  # left half white
    Image.fromarray(im).save(tmp_path / "half.png")
    px = downsampled_pixels([tmp_path / "half.png"], 2).reshape(2, 2, 3)
    assert px[:, 0].min() == 1.0 and px[:, 1].max() == 0.0
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(FormatError, match="bad.png: cannot read image"):
        downsampled_pixels([tmp_path / "bad.png"], 2)


def test_majority_answers() -> None:
    anns = [
        {"question_type": "is", "multiple_choice_answer": "no"},
        {"question_type": "is", "multiple_choice_answer": "yes"},
        {"question_type": "is", "multiple_choice_answer": "yes"},
        {"question_type": "what", "multiple_choice_answer": "red"},
        {"question_type": "what", "multiple_choice_answer": "red"},
        {"question_type": "how", "answers": [{"answer": "2"}, {"answer": "3"}, {"answer": "3"}]},
    ]
    assert majority_answer(anns) == "yes"  # 2 votes, before "red" with 2 (first seen wins)
    assert majority_answers_by_type(anns) == {"is": "yes", "what": "red", "how": "3"}
    with pytest.raises(FormatError, match="no annotations"):
        majority_answer([])
    with pytest.raises(FormatError, match="question 7 has no answers"):
        majority_answer([{"question_id": 7, "answers": []}])
