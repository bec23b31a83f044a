"""Seg-to-image (§4.1, Table 5: 1M examples): segmentation map + caption -> image.

Template (Table 5)::

    Make high quality image from a segmentation map <break> {seg image} <break> {caption} <break> {image}

Rendered record ``{"caption": "a red square on a light background"}``::

    Make high quality image from a segmentation map <break> [seg image] <break> a red square on a light background <break> [image]

The condition comes from the record's ``condition`` field or from the registered
``segmentation`` extractor (:mod:`cm3leon.tasks.conditions`); pass
``extractor=NAME`` to use another one.
"""

from __future__ import annotations

from typing import Any

from cm3leon.tasks.builtin.conditioned import ConditionTask

__all__ = ["TEMPLATES", "seg_to_image"]

TEMPLATES = (
    "Make high quality image from a segmentation map <break> {seg image} <break> {caption} <break> {image}",
)


def seg_to_image(extractor: str = "segmentation", **extractor_options: Any) -> ConditionTask:
    """The seg_to_image task; ``extractor_options`` go to the extractor's factory."""
    return ConditionTask("seg_to_image", TEMPLATES, "seg image", extractor, extractor_options)
