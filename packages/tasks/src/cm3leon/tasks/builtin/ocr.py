"""OCR / "how to write" (§4.1, Table 5: 300k examples): draw a given text.

Template (Table 5; the paper's curly quotes are written as ASCII quotes)::

    draw "{ocr_content}" <break> {image}

Rendered record ``{"text": "OPEN 24 HOURS"}``::

    draw "OPEN 24 HOURS" <break> [image showing the text]

Reader: :func:`cm3leon.tasks.readers.ocr.read_ocr` -- there is no standard public
format for this task, so cm3leon defines one: ``ocr.jsonl`` with lines
``{"image": "<path relative to the file>", "text": "..."}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.tasks.records import OCRRecord, record_id, require_image, require_str
from cm3leon.tasks.synthetic import synthetic_text_image
from cm3leon.tasks.template import TemplateSet

__all__ = ["TEMPLATES", "OCRTask", "ocr"]

TEMPLATES = ('draw "{ocr_content}" <break> {image}',)


@dataclass(frozen=True)
class OCRTask:
    """Render an :class:`~cm3leon.tasks.records.OCRRecord` (``text``, ``image``)."""

    name: str = "ocr"
    templates: tuple[str, ...] = TEMPLATES
    _set: TemplateSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_set", TemplateSet(self.name, tuple(self.templates), outputs=("image",)))

    def render(self, record: OCRRecord | dict[str, Any], *, rng: np.random.Generator) -> Document:
        """Render ``record``; line breaks in the text become spaces."""
        rid = record_id(record, task=self.name)
        text = " ".join(require_str(record, "text", task=self.name).split())
        return self._set.render(
            record_id=rid,
            values={"ocr_content": text},
            images={"image": require_image(record, "image", task=self.name)},
            rng=rng,
            meta={"text": text},
        )

    def example(self, rng: np.random.Generator) -> OCRRecord:
        """A synthetic sign with a random word."""
        word = str(rng.choice(["OPEN", "CAFE", "EXIT", "SALE", "STOP"]))
        return {"id": f"example-{int(rng.integers(1 << 30))}", "image": synthetic_text_image(word),
                "text": word}  # fmt: skip


def ocr() -> OCRTask:
    """The how-to-write task."""
    return OCRTask()
