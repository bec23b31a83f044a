"""Hed-to-image (§4.1, Table 5: 1M examples): soft HED-style boundaries + caption -> image.

Template (Table 5 prints the slot as {seg image}, a copy-paste slip; it holds the hed map)::

    Make high quality image from hed features <break> {hed image} <break> {caption} <break> {image}

Rendered record ``{"caption": "a red square on a light background"}``::

    Make high quality image from hed features <break> [hed image] <break> a red square on a light background <break> [image]

The condition comes from the record's ``condition`` field or from the registered
``soft_edge`` extractor (:mod:`cm3leon.tasks.conditions`); pass
``extractor=NAME`` to use another one.
"""

from __future__ import annotations

from typing import Any

from cm3leon.tasks.builtin.conditioned import ConditionTask

__all__ = ["TEMPLATES", "hed_to_image"]

TEMPLATES = (
    "Make high quality image from hed features <break> {hed image} <break> {caption} <break> {image}",
)


def hed_to_image(extractor: str = "soft_edge", **extractor_options: Any) -> ConditionTask:
    """The hed_to_image task; ``extractor_options`` go to the extractor's factory."""
    return ConditionTask("hed_to_image", TEMPLATES, "hed image", extractor, extractor_options)
