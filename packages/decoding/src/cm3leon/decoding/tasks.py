"""Instruction-following prompts from SFT tasks (any :class:`cm3leon.core.interfaces.Task`).

A task renders a record into a complete document (Table 5 templates).  For inference the
output is left open: the ``output`` field of the record is replaced by a marker before
rendering (a private-use character for text, a placeholder image object for images), and
the marker's place in the rendered document becomes the prompt's :class:`Hole`.  So
``Question: {question} Answer: {answer}. <break> {image}`` with ``output="answer"``
becomes ``Question: ... Answer:<mask:0>. <break> [image] <break> <infill:0>`` and an
editing template ending in ``{image2}`` becomes a continuation after ``<break>``.

This is exactly the layout SFT trains on when the CM3 objective masks the task's target
(``CM3Config.target_prob``; the task marks the output in ``meta["targets"]``): the text
around the hole is cut with the serialiser's own
:func:`cm3leon.core.serialize.split_at_target` (the space before the output belongs to
the output's first BPE token, so the prompt ends exactly where the masked target
starts), and what follows the field in the template (its closing ``.``) stays after
``<mask:0>``.  The model then generates the bare output field, followed by ``<eos>``.

Text segments of the template that hold no ``{field}`` (task prefixes such as "Edit the
image following the text instruction") are kept in every guidance stream (``fixed``);
the template used is the one recorded in ``doc.meta["template"]`` by the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cm3leon.core.documents import ImageSegment, TextSegment
from cm3leon.core.interfaces import Task
from cm3leon.core.serialize import split_at_target
from cm3leon.decoding.prompts import Hole, Prompt

__all__ = ["TEXT_MARKER", "prompt_from_task"]

#: Stands in for the text output while the task renders (Unicode private use area).
TEXT_MARKER = "\ue000"


def prompt_from_task(
    task: Task,
    record: Mapping[str, Any],
    *,
    output: str,
    modality: str = "image",
    rng: np.random.Generator | None = None,
    **prompt_kw: Any,
) -> Prompt:
    """A :class:`Prompt` whose hole is where ``record[output]`` would be rendered.

    Args:
        task: renders records (``task.render(record, rng=rng)``).
        record: the task's record without (or with an ignored) ``output`` value.
        output: the record field the model generates (``"answer"``, ``"edited_image"``).
        modality: ``"text"`` or ``"image"`` (a task spec's ``outputs[0]``).
        rng: picks the template (default: a generator seeded with 0).
        prompt_kw: passed to :class:`Prompt` (``id``, ``max_new_tokens``, ...).

    Raises:
        ValueError: the task does not render the output field exactly once, or renders
            it inside a segment of the other modality.
    """
    from PIL import Image

    if modality not in ("text", "image"):
        raise ValueError(f"task output modality must be 'text' or 'image', got {modality!r}")
    placeholder = TEXT_MARKER if modality == "text" else Image.new("RGB", (1, 1))
    doc = task.render({**record, output: placeholder}, rng=rng or np.random.default_rng(0))
    fixed = _fixed_segments(task, doc)
    segments: list[Any] = []
    found = 0
    for i, seg in enumerate(doc.segments):
        if modality == "image" and isinstance(seg, ImageSegment) and seg.image is placeholder:
            segments.append(Hole("image"))
            found += 1
        elif modality == "text" and isinstance(seg, TextSegment) and TEXT_MARKER in seg.text:
            found += seg.text.count(TEXT_MARKER)
            start = seg.text.index(TEXT_MARKER)
            # Cut as serialisation cuts a target: " blue" carries its space, "." stays after.
            before, _, after = split_at_target(seg.text, start, start + len(TEXT_MARKER))
            segments += [*([TextSegment(before)] if before else []), Hole("text"),
                         *([TextSegment(after)] if after else [])]  # fmt: skip
        else:
            if i in fixed:
                fixed[i] = len(segments)
            segments.append(seg)
    name = getattr(task, "name", type(task).__name__)
    if found != 1:
        raise ValueError(
            f"task {name!r} rendered the output field {output!r} {found} times (expected once); "
            f"is {output!r} a {modality} field of this task?"
        )
    meta = {k: v for k, v in doc.meta.items() if k != output and not _holds(v, placeholder)}
    meta = {"task": name, **meta, **dict(prompt_kw.pop("meta", None) or {})}
    prompt_kw.setdefault("id", doc.id)
    return Prompt(tuple(segments), fixed=frozenset(j for j in fixed.values() if j is not None), meta=meta,
                  **prompt_kw)  # fmt: skip


def _holds(value: Any, placeholder: Any) -> bool:
    """Whether a meta value carries the output placeholder (the task copied the field)."""
    if isinstance(value, str):
        return TEXT_MARKER in value
    if isinstance(value, (list, tuple)):
        return any(_holds(v, placeholder) for v in value)
    return value is placeholder


def _fixed_segments(task: Task, doc: Any) -> dict[int, int | None]:
    """Indices of rendered segments coming from field-free template parts (-> new index)."""
    index = doc.meta.get("template") if isinstance(doc.meta, Mapping) else None
    templates = list(getattr(task, "templates", ()))
    if not isinstance(index, int) or not 0 <= index < len(templates):
        return {}
    parts = [p.strip() for p in templates[index].split("<break>")]
    if len(parts) != len(doc.segments):
        return {}
    return {i: None for i, (part, seg) in enumerate(zip(parts, doc.segments, strict=True))
            if isinstance(seg, TextSegment) and "{" not in part}  # fmt: skip
