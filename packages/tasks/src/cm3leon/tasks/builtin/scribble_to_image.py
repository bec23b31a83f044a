"""Scribble-to-image (§4.1, Table 5: 500k examples): children's scribble + caption -> image.

Templates: Table 5's, and the same layout with the task prefix of §4.1 ("every scribble generation example with 'Create a high-quality image from children's scribble and text description'")::

    Make high quality image from children's scribbles <break> {scribble image} <break> {caption} <break> {image}
    Create a high-quality image from children's scribble and text description <break> {scribble image} <break> {caption} <break> {image}

Rendered record ``{"caption": "a red square on a light background"}``::

    Make high quality image from children's scribbles <break> [scribble image] <break> a red square on a light background <break> [image]

The condition comes from the record's ``condition`` field or from the registered
``scribble`` extractor (:mod:`cm3leon.tasks.conditions`); pass
``extractor=NAME`` to use another one.
"""

from __future__ import annotations

from typing import Any

from cm3leon.tasks.builtin.conditioned import ConditionTask

__all__ = ["TEMPLATES", "scribble_to_image"]

TEMPLATES = (
    "Make high quality image from children's scribbles <break> {scribble image} <break> {caption} <break> {image}",
    "Create a high-quality image from children's scribble and text description <break> {scribble image} <break> {caption} <break> {image}",
)


def scribble_to_image(extractor: str = "scribble", **extractor_options: Any) -> ConditionTask:
    """The scribble_to_image task; ``extractor_options`` go to the extractor's factory."""
    return ConditionTask("scribble_to_image", TEMPLATES, "scribble image", extractor, extractor_options)
