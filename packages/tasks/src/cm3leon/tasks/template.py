"""Prompt templates in the notation of the paper's Table 5.

A template is one string; ``<break>`` separates segments (the serialiser puts a
``<break>`` token at each modality change, Figure 8), a segment that is exactly
``{slot}`` for one of the task's image slots is an image, and every other segment
is text whose ``{field}`` placeholders are filled from the record.  ``[newline]``
(Table 5's notation) becomes a line break.  For example::

    "Question: {question} Answer: {answer}. <break> {image}"

renders to the segments ``[Text("Question: What color is the bench? Answer: blue."),
Image(...)]``.  Segment order is exactly the template's.

**Targets.** A task names its *output* placeholders (``outputs=("answer",)``, an image
slot such as ``("image2",)``).  The rendered document records where they landed in
``meta["targets"]`` (:class:`cm3leon.core.documents.TargetSpan`): an image slot is its
whole segment; text fields are the exact character range of the substituted value
(``"blue"`` above, not the template words around it), several output fields of one text
segment one range from the first to the last (ScienceQA's ``{explanation} So the answer
is {answer}``).  Serialisation turns them into token ranges and the CM3 objective can
mask exactly them (``CM3Config.target_prob``), the layout evaluation prompts use.

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

from cm3leon.core.documents import (
    TARGETS_KEY,
    Document,
    ImageSegment,
    Segment,
    TargetSpan,
    TextSegment,
)
from cm3leon.tasks.records import RecordError

__all__ = [
    "BREAK",
    "NEWLINE",
    "TemplatePart",
    "TemplateSet",
    "choose_template",
    "fill_text",
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


def fill_text(
    fmt: str, values: Mapping[str, str], *, where: str, outputs: Sequence[str] = ()
) -> tuple[str, tuple[int, int] | None]:
    """Substitute ``{field}`` placeholders and the template's ``[newline]`` markers.

    Returns:
        ``(text, span)``: ``span`` is the character range ``[start, end)`` from the first to
        the last substituted ``outputs`` field (``None`` when the text holds none).  Values
        are inserted verbatim (a ``[newline]`` inside a value stays text).

    Raises:
        RecordError: a field without a value, or an output field that renders empty.
    """
    pieces: list[str] = []
    length = 0
    start: int | None = None
    end: int | None = None
    cursor = 0
    for match in [*_PLACEHOLDER.finditer(fmt), None]:
        literal = _NEWLINE.sub("\n", fmt[cursor : match.start() if match else len(fmt)])
        pieces.append(literal)
        length += len(literal)
        if match is None:
            break
        key = match.group(1)
        if key not in values:
            raise RecordError(f"{where}: template field {{{key}}} has no value")
        value = str(values[key])
        if key in outputs:
            if not value:
                raise RecordError(f"{where}: output field {{{key}}} is empty")
            start = length if start is None else start
            end = length + len(value)
        pieces.append(value)
        length += len(value)
        cursor = match.end()
    return "".join(pieces), None if start is None or end is None else (start, end)


@dataclass(frozen=True)
class TemplateSet:
    """The parsed templates of one task.

    Signature: ``TemplateSet(task, templates, image_slots=("image",), outputs=())``, e.g.
    ``TemplateSet("colorize", TEMPLATES, ("grey image", "image"), outputs=("image",))``.

    Args:
        task: task name (used in document ids and errors).
        templates: Table 5 strings; at least one (a tuple).
        image_slots: placeholder names that stand for whole image segments (a slot name
            may contain spaces: ``{grey image}``); every other placeholder is a text field.
        outputs: the placeholders (text fields or image slots) holding the task's output;
            each template must use at least one.  Rendered documents mark them in
            ``meta["targets"]`` (module docstring); empty: no targets are recorded.

    Raises:
        ValueError: no template, a malformed template (module docstring), or a template
            using none of ``outputs``.
    """

    task: str
    templates: tuple[str, ...]
    image_slots: tuple[str, ...] = ("image",)
    outputs: tuple[str, ...] = ()
    parsed: tuple[tuple[TemplatePart, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.templates:
            raise ValueError(f"task {self.task!r}: needs at least one template")
        parsed = tuple(parse_template(t, self.image_slots) for t in self.templates)
        object.__setattr__(self, "parsed", parsed)
        object.__setattr__(self, "outputs", tuple(self.outputs))
        for template, parts in zip(self.templates, parsed, strict=True):
            used = {p.value for p in parts if p.kind == "image"} | {f for p in parts for f in p.fields}
            if self.outputs and not used & set(self.outputs):
                raise ValueError(f"task {self.task!r}: template {template!r} uses none of the outputs {self.outputs}")

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
        records the task, the template index, the record id and the output ``targets``,
        plus the ``meta`` given here (ground truth for evaluation).

        Args (keyword-only):
            record_id: the record's id (``records.record_id``); the document id is
                ``"<task>/<record_id>"``.
            values: text field -> value (inserted verbatim with ``str``; ``None``:
                unavailable, see above).
            images: image slot -> image (``PIL.Image`` or ``(H, W, 3)`` uint8 array).
            rng: the caller's ``numpy.random.Generator``; it draws the template, so the
                same seed renders the same document.
            meta: extra entries for the document's ``meta`` (e.g. reference answers).

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
        targets: list[TargetSpan] = []
        for part in self.parsed[index]:
            if part.kind == "image":
                if images.get(part.value) is None:
                    raise RecordError(f"{where}: no image for slot {{{part.value}}}")
                if part.value in self.outputs:
                    targets.append(TargetSpan(len(segments)))
                segments.append(ImageSegment(image=images[part.value]))
            else:
                text, span = fill_text(part.value, values, where=where, outputs=self.outputs)
                if span is not None:
                    targets.append(TargetSpan(len(segments), *span))
                segments.append(TextSegment(text))
        info: dict[str, Any] = {"task": self.task, "template": index, "record": record_id}
        if self.outputs:
            info[TARGETS_KEY] = [t.to_json() for t in targets]
        return Document(tuple(segments), id=f"{self.task}/{record_id}", meta=info | dict(meta or {}))
