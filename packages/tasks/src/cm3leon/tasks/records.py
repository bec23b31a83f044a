"""Canonical task records: what a reader yields and what a task renders.

Every reader (:mod:`cm3leon.tasks.readers`) turns a public file format into one of
the record types below, and every task (:mod:`cm3leon.tasks.builtin`) renders one of
them into a :class:`cm3leon.core.documents.Document`.  Records are plain ``dict``
objects (``TypedDict`` for documentation and type checking) so third-party readers
and tasks can produce and consume them without importing this package.

Conventions shared by all records:

* ``id`` is a non-empty string unique within its source (``"coco/391895/0"``).
* ``image`` is an RGB ``PIL.Image.Image`` (readers load and verify it; a missing or
  corrupt file is a :class:`RecordError`, never a silently dropped record).
* Boxes are COCO ``[x, y, width, height]`` in pixels of ``image``.
* Keypoints are COCO ``[x1, y1, v1, x2, y2, v2, ...]`` (``v`` = 0 not labelled,
  1 labelled but occluded, 2 visible).
* Depth maps are ``(H, W)`` float arrays where larger means farther and ``0`` means
  unknown, the same convention as the 16-bit depth PNGs the readers load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from typing_extensions import NotRequired

__all__ = [
    "CaptionRecord",
    "ConditionRecord",
    "DetectionRecord",
    "EditRecord",
    "ObjectAnnotation",
    "OCRRecord",
    "RecordError",
    "ScienceQARecord",
    "VQARecord",
    "as_str_list",
    "record_id",
    "require",
    "require_image",
    "require_str",
]


class RecordError(ValueError):
    """A record is malformed; the message names the source file and the record.

    ``reason`` is a short key (``missing_key``, ``wrong_type``, ``missing_image``,
    ``corrupt_image``, ...) under which readers count skipped records.
    """

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class CaptionRecord(TypedDict):
    """An image with one caption (COCO, Flickr30k, Image Paragraph, Localized Narratives).

    ``captions`` (optional) holds every reference caption of the image, for evaluation.
    """

    id: str
    image: Any
    caption: str
    captions: NotRequired[list[str]]


class ObjectAnnotation(TypedDict):
    """One annotated object of a detection/segmentation record.

    ``segmentation`` is COCO's field verbatim: a list of polygons ``[[x1, y1, ...], ...]``
    or an RLE dict ``{"size": [H, W], "counts": str | list[int]}``.
    """

    label: str
    box: list[float]
    category_id: NotRequired[int]
    segmentation: NotRequired[Any]


class DetectionRecord(TypedDict):
    """An image, a caption and its objects (spatially grounded generation, seg-to-image)."""

    id: str
    image: Any
    caption: str
    objects: list[ObjectAnnotation]


class ConditionRecord(TypedDict):
    """Source of a ControlNet-style task: an image, its caption and optional annotations.

    Condition extractors read the optional fields: ``objects`` (segmentation maps),
    ``keypoints`` (one COCO keypoint list per person, pose), ``skeleton`` (1-based
    COCO limb pairs), ``depth`` (``(H, W)`` float, larger = farther, 0 = unknown).
    ``condition`` is a precomputed condition image; when present it is used as is.
    """

    id: str
    image: Any
    caption: str
    objects: NotRequired[list[ObjectAnnotation]]
    keypoints: NotRequired[list[list[float]]]
    skeleton: NotRequired[list[list[int]]]
    depth: NotRequired[Any]
    condition: NotRequired[Any]


class EditRecord(TypedDict):
    """An InstructPix2Pix edit: input image, instruction, edited image."""

    id: str
    image: Any
    instruction: str
    edited_image: Any
    input_caption: NotRequired[str]
    output_caption: NotRequired[str]


class OCRRecord(TypedDict):
    """An image showing ``text`` (the how-to-write task)."""

    id: str
    image: Any
    text: str


class VQARecord(TypedDict):
    """A visual question; ``answer`` is the training target (the most frequent answer).

    ``answers`` keeps every annotator answer (ten for VQA v2/VizWiz) for VQA accuracy.
    """

    id: str
    image: Any
    question: str
    answer: str
    answers: NotRequired[list[str]]


class ScienceQARecord(TypedDict):
    """A ScienceQA multiple-choice problem; ``answer`` indexes ``choices``."""

    id: str
    image: Any
    question: str
    context: str
    choices: list[str]
    answer: int
    explanation: str


def require(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, task: str) -> Any:
    """Return ``record[key]`` after checking it exists and has type ``kind``.

    ``require(record, "answer", str, task=self.name)``; a ``bool`` passes only where
    ``bool`` is asked for (it is an ``int`` to Python).  For text use :func:`require_str`
    (stripped, non-empty), for images :func:`require_image` (RGB ``PIL.Image``).

    Args:
        record: the record (a mapping; anything else is a ``RecordError``).
        key: the field to fetch.
        kind: a type or a tuple of types the value must be an instance of.
        task: the task's name, for the error message (keyword-only).

    Raises:
        RecordError: naming the task, the record id and the key; ``reason`` is
            ``missing_key`` or ``wrong_type`` (what ``--skip-bad`` counts).
    """
    rid = record.get("id", "?") if isinstance(record, Mapping) else "?"
    if not isinstance(record, Mapping):
        raise RecordError(f"task {task!r}: record must be a mapping, got {type(record).__name__}")
    if key not in record:
        raise RecordError(f"task {task!r}: record {rid!r} has no {key!r}", reason="missing_key")
    value = record[key]
    kinds = _as_tuple(kind)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise RecordError(
            f"task {task!r}: record {rid!r}: {key!r} must be {names}, got {type(value).__name__}",
            reason="wrong_type",
        )
    return value


def require_str(record: Mapping[str, Any], key: str, *, task: str) -> str:
    """Return ``record[key]`` as a stripped non-empty string."""
    value = require(record, key, str, task=task).strip()
    if not value:
        raise RecordError(f"task {task!r}: record {record.get('id', '?')!r}: {key!r} is empty")
    return value


def require_image(record: Mapping[str, Any], key: str, *, task: str) -> Any:
    """Return ``record[key]`` as an RGB ``PIL.Image`` (uint8 arrays are converted)."""
    import numpy as np
    from PIL import Image

    value = require(record, key, (Image.Image, np.ndarray), task=task)
    if isinstance(value, np.ndarray):
        if value.dtype != np.uint8 or value.ndim not in (2, 3):
            raise RecordError(
                f"task {task!r}: record {record.get('id', '?')!r}: {key!r} array must be "
                f"uint8 (H, W[, 3]), got {value.dtype} {value.shape}"
            )
        value = Image.fromarray(value)
    return value if value.mode == "RGB" else value.convert("RGB")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def record_id(record: Mapping[str, Any], *, task: str) -> str:
    """The record's ``id`` as a string (required, non-empty)."""
    value = record.get("id") if isinstance(record, Mapping) else None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise RecordError(f"task {task!r}: record has no usable 'id' (got {value!r})")
    return str(value)


def as_str_list(value: Sequence[Any], *, what: str) -> list[str]:
    """Check ``value`` is a list of strings; raise :class:`RecordError` naming ``what``."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"{what} must be a list of strings, got {value!r:.80}")
    return list(value)
