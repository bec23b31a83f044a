"""Depth-to-image (§4.1, Table 5: 1M examples): depth map + caption -> image.

Template (Table 5)::

    Make high quality image from depth features <break> {depth image} <break> {caption} <break> {image}

Rendered record ``{"caption": "a red square on a light background"}``::

    Make high quality image from depth features <break> [depth image] <break> a red square on a light background <break> [image]

The condition comes from the record's ``condition`` field or from the registered
``depth`` extractor (:mod:`cm3leon.tasks.conditions`); pass
``extractor=NAME`` to use another one.
"""

from __future__ import annotations

from typing import Any

from cm3leon.tasks.builtin.conditioned import ConditionTask

__all__ = ["TEMPLATES", "depth_to_image"]

TEMPLATES = (
    "Make high quality image from depth features <break> {depth image} <break> {caption} <break> {image}",
)


def depth_to_image(extractor: str = "depth", **extractor_options: Any) -> ConditionTask:
    """The depth_to_image task; ``extractor_options`` go to the extractor's factory."""
    return ConditionTask("depth_to_image", TEMPLATES, "depth image", extractor, extractor_options)
