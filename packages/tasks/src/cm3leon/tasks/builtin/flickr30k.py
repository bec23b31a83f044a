"""Flickr30k (Young et al., 2014), Table 5: 144k examples.

Templates (Table 5 lists the same two as COCO)::

    {caption} <break> {image}
    Describe the given picture. {caption} <break> {image}

Rendered record ``{"caption": "Two young guys with shaggy hair look at their hands."}``
with template 0::

    Two young guys with shaggy hair look at their hands. <break> [image]

Reader: :func:`cm3leon.tasks.readers.flickr30k.read_flickr30k` (Karpathy
``dataset_flickr30k.json``, one record per sentence).
"""

from __future__ import annotations

from cm3leon.tasks.builtin.caption import CaptionTask

__all__ = ["TEMPLATES", "flickr30k"]

TEMPLATES = (
    "{caption} <break> {image}",
    "Describe the given picture. {caption} <break> {image}",
)


def flickr30k() -> CaptionTask:
    """The Flickr30k captioning task."""
    return CaptionTask("flickr30k", TEMPLATES)
