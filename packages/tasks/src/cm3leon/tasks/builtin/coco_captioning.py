"""MS-COCO captioning (Chen et al., 2015), Table 5: 591k examples.

Templates (one drawn per example)::

    {caption} <break> {image}
    Describe the given picture. {caption} <break> {image}

Rendered record ``{"caption": "A man riding a wave on top of a surfboard."}`` with
template 1::

    Describe the given picture. A man riding a wave on top of a surfboard. <break> [image]

Reader: :func:`cm3leon.tasks.readers.coco.read_coco_captions` (one record per caption
of ``captions_<split>.json``).
"""

from __future__ import annotations

from cm3leon.tasks.builtin.caption import CaptionTask

__all__ = ["TEMPLATES", "coco_captioning"]

TEMPLATES = (
    "{caption} <break> {image}",
    "Describe the given picture. {caption} <break> {image}",
)


def coco_captioning() -> CaptionTask:
    """The COCO captioning task."""
    return CaptionTask("coco_captioning", TEMPLATES)
