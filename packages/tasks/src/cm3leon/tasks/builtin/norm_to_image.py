"""Norm-to-image (§4.1, Table 5: 1M examples): surface normals (from depth) + caption -> image.

Template (Table 5 prints the slot as {depth image}; it holds the normal map)::

    Make high quality image from 3D norm features <break> {norm image} <break> {caption} <break> {image}

Rendered record ``{"caption": "a red square on a light background"}``::

    Make high quality image from 3D norm features <break> [norm image] <break> a red square on a light background <break> [image]

The condition comes from the record's ``condition`` field or from the registered
``normals`` extractor (:mod:`cm3leon.tasks.conditions`); pass
``extractor=NAME`` to use another one.
"""

from __future__ import annotations

from typing import Any

from cm3leon.tasks.builtin.conditioned import ConditionTask

__all__ = ["TEMPLATES", "norm_to_image"]

TEMPLATES = (
    "Make high quality image from 3D norm features <break> {norm image} <break> {caption} <break> {image}",
)


def norm_to_image(extractor: str = "normals", **extractor_options: Any) -> ConditionTask:
    """The norm_to_image task; ``extractor_options`` go to the extractor's factory."""
    return ConditionTask("norm_to_image", TEMPLATES, "norm image", extractor, extractor_options)
