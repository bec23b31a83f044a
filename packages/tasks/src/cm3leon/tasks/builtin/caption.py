"""Shared image-captioning task: an image and a caption under a Table 5 template.

Used by COCO captioning, Flickr30k, Image Paragraph and Localized Narratives, which
differ only in their templates and data.  Table 5 writes every captioning template
with the text first (``"Describe the given picture. {caption} <break> {image}"``);
we keep that order exactly.  The caption is the task's target (``meta["targets"]``):
the CM3 objective's task-aware option masks exactly it, so its ``<infill>`` block comes
*after* the image and the model learns image -> text from these documents --
``Describe the given picture.<mask:0> <break> [image] <break> <infill:0> A man ...``,
the layout the captioning evaluation prompts with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.tasks.records import CaptionRecord, record_id, require_image, require_str
from cm3leon.tasks.synthetic import synthetic_scene
from cm3leon.tasks.template import TemplateSet

__all__ = ["CaptionTask"]


@dataclass(frozen=True)
class CaptionTask:
    """Render a :class:`~cm3leon.tasks.records.CaptionRecord`.

    Args:
        name: registry name (``coco_captioning``).
        templates: Table 5 strings with ``{caption}`` and ``{image}``.
    """

    name: str
    templates: tuple[str, ...]
    _set: TemplateSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_set", TemplateSet(self.name, tuple(self.templates), outputs=("caption",)))

    def render(self, record: CaptionRecord | dict[str, Any], *, rng: np.random.Generator) -> Document:
        """Render ``record`` (needs ``id``, ``image``, ``caption``)."""
        rid = record_id(record, task=self.name)
        caption = require_str(record, "caption", task=self.name)
        image = require_image(record, "image", task=self.name)
        refs = record.get("captions") or [caption]
        return self._set.render(
            record_id=rid,
            values={"caption": caption},
            images={"image": image},
            rng=rng,
            meta={"caption": caption, "references": [str(c) for c in refs]},
        )

    def example(self, rng: np.random.Generator) -> CaptionRecord:
        """A small synthetic record (for docs and the conformance suite)."""
        scene = synthetic_scene(rng)
        return {"id": f"example-{int(rng.integers(1 << 30))}", "image": scene["image"],
                "caption": scene["caption"]}  # fmt: skip
