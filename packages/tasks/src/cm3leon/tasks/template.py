"""Prompt templates in the notation of the paper's Table 5.

A template is one string; ``<break>`` separates segments (the serialiser puts a
``<break>`` token at each modality change, Figure 8), a segment that is exactly
``{slot}`` for one of the task's image slots is an image, and every other segment
is text whose ``{field}`` placeholders are filled from the record.  ``[newline]``
(Table 5's notation) becomes a line break.  For example::

    "Question: {question} Answer: {answer}. <break> {image}"

renders to the segments ``[Text("Question: What color is the bench? Answer: blue."),
Image(...)]``.  Segment order is exactly the template's.

Tasks compose a :class:`TemplateSet` (they do not inherit from it): it parses and
checks every template once, picks one per example with the caller's
``numpy.random.Generator`` and builds the :class:`~cm3leon.core.documents.Document`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from cm3leon.core.documents import Document, ImageSegment, Segment, TextSegment
from cm3leon.tasks.records import RecordError

__all__ = [
    "BREAK",
    "NEWLINE",
    "TemplatePart",
    "TemplateSet",
    "choose_template",
    "parse_template",
]

BREAK = "<break>"
NEWLINE = "[newline]"

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_NEWLINE = re.compile(r"\s*\[newline\]\s*")


@dataclass(frozen=True)
class TemplatePart:
    """One segment of a parsed template.

    Attributes:
        kind: ``"text"`` or ``"image"``.
        value: the text format string, or the image slot name.
        fields: placeholders used by a text part (empty for images).
    """

    kind: Literal["text", "image"]
    value: str
    fields: tuple[str, ...] = ()


def parse_template(template: str, image_slots: Sequence[str]) -> tuple[TemplatePart, ...]:
    """Split ``template`` at ``<break>`` into text and image parts.

    Raises:
        ValueError: an empty segment, or an image slot used inside a text segment.
    """
    if not isinstance(template, str) or not template.strip():
        raise ValueError(f"template must be a non-empty string, got {template!r}")
    parts: list[TemplatePart] = []
    for i, raw in enumerate(template.split(BREAK)):
        text = raw.strip()
        if not text:
            raise ValueError(f"template {template!r}: segment {i} is empty")
        whole = _PLACEHOLDER.fullmatch(text)
        if whole and whole.group(1) in image_slots:
            parts.append(TemplatePart("image", whole.group(1)))
            continue
        fields = tuple(_PLACEHOLDER.findall(text))
        misplaced = [f for f in fields if f in image_slots]
        if misplaced:
            raise ValueError(
                f"template {template!r}: image slot {{{misplaced[0]}}} must be a segment of its own"
            )
        parts.append(TemplatePart("text", text, fields))
    return tuple(parts)


def choose_template(n: int, rng: np.random.Generator) -> int:
    """Index of the template to use, drawn uniformly with ``rng``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return int(rng.integers(n))


def fill_text(fmt: str, values: Mapping[str, str], *, where: str) -> str:
    """Substitute ``{field}`` placeholders and ``[newline]`` markers."""

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise RecordError(f"{where}: template field {{{key}}} has no value")
        return str(values[key])

    return _NEWLINE.sub("\n", _PLACEHOLDER.sub(sub, fmt))


@dataclass(frozen=True)
class TemplateSet:
    """The parsed templates of one task.

    Args:
        task: task name (used in document ids and errors).
        templates: Table 5 strings; at least one.
        image_slots: placeholder names that stand for whole image segments.
    """

    task: str
    templates: tuple[str, ...]
    image_slots: tuple[str, ...] = ("image",)
    parsed: tuple[tuple[TemplatePart, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.templates:
            raise ValueError(f"task {self.task!r}: needs at least one template")
        parsed = tuple(parse_template(t, self.image_slots) for t in self.templates)
        object.__setattr__(self, "parsed", parsed)

    def fields(self) -> set[str]:
        """Every text placeholder used by any template."""
        return {f for parts in self.parsed for p in parts for f in p.fields}

    def render(
        self,
        *,
        record_id: str,
        values: Mapping[str, str],
        images: Mapping[str, Any],
        rng: np.random.Generator,
        meta: Mapping[str, Any] | None = None,
    ) -> Document:
        """Render one example with a template chosen by ``rng``.

        A field whose value is ``None`` is *unavailable* (e.g. a ScienceQA problem
        without an explanation): templates using it are not drawn.  A field that is
        absent from ``values`` altogether is an error.  ``meta`` of the document
        records the task, the template index and the record id, plus the ``meta``
        given here (ground truth for evaluation).

        Raises:
            RecordError: a field or image is missing, or no template is usable.
        """
        where = f"task {self.task!r}, record {record_id!r}"
        usable = [
            i
            for i, parts in enumerate(self.parsed)
            if all(values.get(f, "") is not None for p in parts for f in p.fields)
        ]
        if not usable:
            raise RecordError(f"{where}: every template needs a field the record lacks")
        index = usable[choose_template(len(usable), rng)]
        segments: list[Segment] = []
        for part in self.parsed[index]:
            if part.kind == "image":
                if images.get(part.value) is None:
                    raise RecordError(f"{where}: no image for slot {{{part.value}}}")
                segments.append(ImageSegment(image=images[part.value]))
            else:
                segments.append(TextSegment(fill_text(part.value, values, where=where)))
        info = {"task": self.task, "template": index, "record": record_id} | dict(meta or {})
        return Document(tuple(segments), id=f"{self.task}/{record_id}", meta=info)
