"""Localized Narratives (Pont-Tuset et al., 2020), Table 5: 164k examples.

Templates::

    Generate a long narration of what is happening in the given image. {caption} <break> {image}
    Generate a long caption for the given image. {caption} <break> {image}

Rendered record ``{"caption": "In this image I can see a dog on the grass."}`` with
template 0::

    Generate a long narration of what is happening in the given image. In this image I can see a dog on the grass. <break> [image]

Reader: :func:`cm3leon.tasks.readers.narratives.read_localized_narratives`
(the public ``*_localized_narratives.jsonl`` files; the narration is ``caption``).
"""

from __future__ import annotations

from cm3leon.tasks.builtin.caption import CaptionTask

__all__ = ["TEMPLATES", "localized_narratives"]

TEMPLATES = (
    "Generate a long narration of what is happening in the given image. {caption} <break> {image}",
    "Generate a long caption for the given image. {caption} <break> {image}",
)


def localized_narratives() -> CaptionTask:
    """The Localized Narratives task."""
    return CaptionTask("localized_narratives", TEMPLATES)
