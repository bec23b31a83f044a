"""Model-free baselines reported next to the model's scores.

* :func:`nearest_captions` — the retrieval-free nearest-caption baseline for captioning:
  each evaluation image gets the first reference caption of the training image nearest
  in pixel space (L2 between images downsampled to ``size x size`` RGB with a box
  filter; ties go to the first training image).  No learned model is involved.
* :func:`majority_answer` / :func:`majority_answers_by_type` — the VQA prior baselines:
  the most frequent ``multiple_choice_answer`` of a set of annotations (overall, and per
  question type with the overall answer for unseen types).  Ties go to the answer seen
  first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cm3leon.eval.formats import FormatError

__all__ = [
    "downsampled_pixels",
    "majority_answer",
    "majority_answers_by_type",
    "nearest_captions",
]


def downsampled_pixels(paths: Sequence[Path], size: int) -> np.ndarray:
    """``(N, size*size*3)`` float32 pixels in ``[0, 1]`` of image files, box-downsampled.

    Files are read by core's hardened loader (:func:`cm3leon.core.images.load_image`:
    white behind transparency, 16-bit rescaled, EXIF orientation applied).

    Raises:
        FormatError: an unreadable image; the message starts with its path.
    """
    from PIL import Image

    from cm3leon.core.images import ImageInputError, load_image

    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rows = []
    for path in paths:
        try:
            small = load_image(path).resize((size, size), Image.Resampling.BOX)
        except ImageInputError as err:
            raise FormatError(f"{err.source}: cannot read image: {err.reason}") from None
        rows.append(np.asarray(small, dtype=np.float32).reshape(-1) / 255.0)
    return np.stack(rows) if rows else np.zeros((0, size * size * 3), np.float32)


def nearest_captions(
    queries: Sequence[Path],
    train_images: Sequence[Path],
    train_captions: Sequence[str],
    *,
    size: int = 8,
    batch: int = 256,
) -> list[tuple[int, str]]:
    """For every query image: ``(index of the nearest training image, its caption)``.

    Raises:
        ValueError: no training images, or images and captions of different lengths.
    """
    if not train_images or len(train_images) != len(train_captions):
        raise ValueError(
            f"need training images with one caption each, got {len(train_images)} images and "
            f"{len(train_captions)} captions"
        )
    train = downsampled_pixels(train_images, size).astype(np.float64)  # (M, D)
    train_sq = (train * train).sum(1)  # (M,)
    out: list[tuple[int, str]] = []
    for start in range(0, len(queries), batch):
        q = downsampled_pixels(queries[start : start + batch], size).astype(np.float64)  # (B, D)
        dist = (q * q).sum(1)[:, None] - 2.0 * q @ train.T + train_sq[None]  # (B, M)
        for j in np.argmin(dist, axis=1).tolist():
            out.append((int(j), train_captions[j]))
    return out


def _mode(values: Sequence[str]) -> str:
    """Most frequent value; ties go to the one seen first."""
    counts = Counter(values)
    first: dict[str, int] = {}
    for i, v in enumerate(values):
        first.setdefault(v, i)
    return max(counts, key=lambda v: (counts[v], -first[v]))


def _answer_of(entry: Mapping[str, Any], where: str) -> str:
    if isinstance(entry.get("multiple_choice_answer"), str):
        return entry["multiple_choice_answer"]
    answers = [a["answer"] if isinstance(a, Mapping) else a for a in entry.get("answers", [])]
    if not answers:
        raise FormatError(f"{where}: question {entry.get('question_id')} has no answers")
    return _mode(answers)


def majority_answer(annotations: Sequence[Mapping[str, Any]], *, where: str = "annotations") -> str:
    """The most frequent answer (``multiple_choice_answer``, else the answers' mode)."""
    answers = [_answer_of(a, where) for a in annotations]
    if not answers:
        raise FormatError(f"{where}: no annotations to take a majority answer from")
    return _mode(answers)


def majority_answers_by_type(
    annotations: Sequence[Mapping[str, Any]], *, where: str = "annotations"
) -> dict[str, str]:
    """``question_type -> majority answer`` (questions without a type are grouped under ``""``)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for a in annotations:
        groups.setdefault(str(a.get("question_type", "")), []).append(a)
    return {qtype: majority_answer(rows, where=where) for qtype, rows in groups.items()}
