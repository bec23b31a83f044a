"""Edge-to-image (§4.1, Table 5: 1M examples): canny edges + caption -> image.

Template (Table 5)::

    Make high quality image from canny edge features <break> {edge image} <break> {caption} <break> {image}

Rendered record ``{"caption": "a red square on a light background"}``::

    Make high quality image from canny edge features <break> [edge image] <break> a red square on a light background <break> [image]

The condition comes from the record's ``condition`` field or from the registered
``canny`` extractor (:mod:`cm3leon.tasks.conditions`); pass
``extractor=NAME`` to use another one.
"""

from __future__ import annotations

from typing import Any

from cm3leon.tasks.builtin.conditioned import ConditionTask

__all__ = ["TEMPLATES", "edge_to_image"]

TEMPLATES = (
    "Make high quality image from canny edge features <break> {edge image} <break> {caption} <break> {image}",
)


def edge_to_image(extractor: str = "canny", **extractor_options: Any) -> ConditionTask:
    """The edge_to_image task; ``extractor_options`` go to the extractor's factory."""
    return ConditionTask("edge_to_image", TEMPLATES, "edge image", extractor, extractor_options)
