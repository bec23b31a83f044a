"""Pose-to-image (§4.1, Table 5: 142k examples): OpenPose-style skeleton + caption -> image.

Template (Table 5 prints the slot as {seg image}, a copy-paste slip; it holds the pose map)::

    Make high quality image from openpose features <break> {pose image} <break> {caption} <break> {image}

Rendered record ``{"caption": "a red square on a light background"}``::

    Make high quality image from openpose features <break> [pose image] <break> a red square on a light background <break> [image]

The condition comes from the record's ``condition`` field or from the registered
``pose`` extractor (:mod:`cm3leon.tasks.conditions`); pass
``extractor=NAME`` to use another one.
"""

from __future__ import annotations

from typing import Any

from cm3leon.tasks.builtin.conditioned import ConditionTask

__all__ = ["TEMPLATES", "pose_to_image"]

TEMPLATES = (
    "Make high quality image from openpose features <break> {pose image} <break> {caption} <break> {image}",
)


def pose_to_image(extractor: str = "pose", **extractor_options: Any) -> ConditionTask:
    """The pose_to_image task; ``extractor_options`` go to the extractor's factory."""
    return ConditionTask("pose_to_image", TEMPLATES, "pose image", extractor, extractor_options)
