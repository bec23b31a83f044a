"""Spatially grounded image generation from object detection data (§4.1, Table 5: 3M).

Template (Table 5; ``{objects}`` expands its ``{obj1} at {loc1}, {obj2} at {loc2} ...``)::

    Generate high quality image of {caption} with segmentations {objects} <break> {image}

Each object is written as its label followed by its box discretised into
``num_bins`` bins per axis, as four location words ``<loc_x0><loc_y0><loc_x1><loc_y1>``
(top-left and bottom-right corners; "each object represented by discrete tokens").
Objects are listed largest first, at most ``max_objects`` of them.  Rendered with
32 bins for a 64x64 image with a red square at COCO box ``[8, 8, 16, 16]``::

    Generate high quality image of a red square on a table with segmentations red square at <loc_4><loc_4><loc_12><loc_12> <break> [image]

Reader: :func:`cm3leon.tasks.readers.coco.read_coco_instances` (``instances_<split>.json``
with the captions of ``captions_<split>.json``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.tasks.records import (
    DetectionRecord,
    RecordError,
    record_id,
    require,
    require_image,
    require_str,
)
from cm3leon.tasks.synthetic import synthetic_scene
from cm3leon.tasks.template import TemplateSet

__all__ = ["TEMPLATES", "DetectionTask", "discretise_box", "location_text", "object_detection"]

TEMPLATES = ("Generate high quality image of {caption} with segmentations {objects} <break> {image}",)


def discretise_box(box: Sequence[float], width: int, height: int, num_bins: int) -> tuple[int, ...]:
    """COCO ``[x, y, w, h]`` in pixels -> bin indices ``(x0, y0, x1, y1)`` in ``[0, num_bins)``.

    A coordinate ``c`` of an axis of length ``L`` falls in bin ``floor(c / L * num_bins)``
    (clipped), so corners on the far edge land in the last bin.
    """
    x, y, w, h = (float(v) for v in box)
    corners = ((x, width), (y, height), (x + w, width), (y + h, height))
    return tuple(min(num_bins - 1, max(0, math.floor(c / size * num_bins))) for c, size in corners)


def location_text(bins: Sequence[int]) -> str:
    """``(4, 4, 12, 12) -> "<loc_4><loc_4><loc_12><loc_12>"``."""
    return "".join(f"<loc_{b}>" for b in bins)


@dataclass(frozen=True)
class DetectionTask:
    """Render a :class:`~cm3leon.tasks.records.DetectionRecord`.

    Args:
        num_bins: location bins per axis.
        max_objects: keep at most this many objects (the largest).
    """

    name: str = "object_detection"
    templates: tuple[str, ...] = TEMPLATES
    num_bins: int = 32
    max_objects: int = 8
    _set: TemplateSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_bins < 2 or self.max_objects < 1:
            raise ValueError("DetectionTask: num_bins must be >= 2 and max_objects >= 1")
        object.__setattr__(self, "_set", TemplateSet(self.name, tuple(self.templates), outputs=("image",)))

    def render(self, record: DetectionRecord | dict[str, Any], *, rng: np.random.Generator) -> Document:
        """Render ``record``; it needs at least one object with a valid box."""
        rid = record_id(record, task=self.name)
        image = require_image(record, "image", task=self.name)
        caption = require_str(record, "caption", task=self.name).rstrip(".")
        objects = self._objects(record, rid, image.size)
        listed = ", ".join(f"{label} at {location_text(bins)}" for label, bins in objects)
        return self._set.render(
            record_id=rid,
            values={"caption": caption, "objects": listed},
            images={"image": image},
            rng=rng,
            meta={"caption": caption, "objects": [[label, list(b)] for label, b in objects]},
        )

    def _objects(self, record: Any, rid: str, size: tuple[int, int]) -> list[tuple[str, tuple[int, ...]]]:
        found = []
        for i, obj in enumerate(require(record, "objects", list, task=self.name)):
            where = f"task {self.name!r}: record {rid!r}: objects[{i}]"
            label, box = (obj.get("label"), obj.get("box")) if isinstance(obj, dict) else (None, None)
            if not isinstance(label, str) or not label.strip():
                raise RecordError(f"{where}: needs a non-empty 'label'")
            if (not isinstance(box, (list, tuple)) or len(box) != 4
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)
                    or box[2] < 0 or box[3] < 0):  # fmt: skip
                raise RecordError(f"{where}: 'box' must be [x, y, w, h] with w, h >= 0, got {box!r}")
            found.append((box[2] * box[3], i, label.strip(), discretise_box(box, *size, self.num_bins)))
        if not found:
            raise RecordError(f"task {self.name!r}: record {rid!r} has no objects")
        found.sort(key=lambda item: (-item[0], item[1]))
        return [(label, bins) for _, _, label, bins in found[: self.max_objects]]

    def example(self, rng: np.random.Generator) -> DetectionRecord:
        """A synthetic scene with its object boxes."""
        scene = synthetic_scene(rng)
        return {"id": f"example-{int(rng.integers(1 << 30))}", "image": scene["image"],
                "caption": scene["caption"], "objects": scene["objects"]}  # fmt: skip


def object_detection(num_bins: int = 32, max_objects: int = 8) -> DetectionTask:
    """The spatially grounded generation task."""
    return DetectionTask(num_bins=num_bins, max_objects=max_objects)
