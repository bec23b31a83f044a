"""Image Paragraph captioning (Krause et al., 2017), Table 5: 14k examples.

Templates, exactly as Table 5 lists them.  The first instruction is listed twice
there; we keep both copies, so it is drawn with probability 1/2 (as in the paper's
template list) and the other two with 1/4 each::

    Describe the given picture in very detail. {caption} <break> {image}
    Describe all the objects in the given image in very detail. {caption} <break> {image}
    Generate a long caption for the given image. {caption} <break> {image}
    Describe the given picture in very detail. {caption} <break> {image}

Rendered record ``{"caption": "A large building with a clock tower. The sky is blue."}``
with template 2::

    Generate a long caption for the given image. A large building with a clock tower. The sky is blue. <break> [image]

Reader: :func:`cm3leon.tasks.readers.paragraph.read_image_paragraph`
(``paragraphs_v1.json`` + ``<split>_split.json``).
"""

from __future__ import annotations

from cm3leon.tasks.builtin.caption import CaptionTask

__all__ = ["TEMPLATES", "image_paragraph"]

TEMPLATES = (
    "Describe the given picture in very detail. {caption} <break> {image}",
    "Describe all the objects in the given image in very detail. {caption} <break> {image}",
    "Generate a long caption for the given image. {caption} <break> {image}",
    "Describe the given picture in very detail. {caption} <break> {image}",
)


def image_paragraph() -> CaptionTask:
    """The Image Paragraph (long caption) task."""
    return CaptionTask("image_paragraph", TEMPLATES)
