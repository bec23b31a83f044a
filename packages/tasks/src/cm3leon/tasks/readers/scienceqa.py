"""ScienceQA reader: ``problems.json`` + ``images/<split>/<pid>/image.png``.

Format::

    problems.json   {"<pid>": {"question": "...", "choices": ["...", "..."], "answer": 0,
                               "hint": "<context>", "image": "image.png" | null,
                               "lecture": "...", "solution": "<explanation>",
                               "split": "train", "subject": ..., "grade": ...}, ...}

``split`` keeps the problems of that split (``train``/``val``/``test``; ``minitrain``
etc. also work), ``None`` keeps all.  The record's ``context`` is ScienceQA's ``hint``
and ``explanation`` its ``solution``.  Problems without an image are counted under
``filtered.no_image`` and not yielded (Table 5's template ends with the image).
The ``images/`` folder is looked for next to ``problems.json`` and one or two levels
up (the release keeps ``data/scienceqa/problems.json`` and ``images/`` at the top);
``image_dir=`` overrides.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.tasks.readers.common import (
    ReadContext,
    RecordError,
    entry_field,
    find_annotation_file,
    load_image,
    load_json,
    pick_image_dir,
    reader,
)

__all__ = ["read_scienceqa"]


@reader
def read_scienceqa(path: Path, *, split: str | None, ctx: ReadContext,
                   image_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One :class:`ScienceQARecord` per problem with an image: ``{"id": "<pid>", ...}``."""
    ann_file = find_annotation_file(path, ("problems.json",), None, "ScienceQA problems")
    problems = load_json(ann_file, dict)
    selected = [(pid, p) for pid, p in problems.items()
                if split is None or not isinstance(p, dict) or p.get("split") == split]  # fmt: skip
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here = ann_file.parent
        probes = [[f"{p.get('split')}/{pid}/{p['image']}"] for pid, p in selected[:50]
                  if isinstance(p, dict) and isinstance(p.get("image"), str)][:8]  # fmt: skip
        folder = pick_image_dir([here / "images", here.parent / "images", here.parent.parent / "images"],
                                probes, ann_file)  # fmt: skip
    for pid, problem in selected:
        where = f"{ann_file}: problem {pid!r}"
        if isinstance(problem, dict) and problem.get("image") is None and "image" in problem:
            ctx.filtered("no_image")
            continue

        def make(p: Any = problem, w: str = where, pid: str = pid) -> dict:
            choices = entry_field(p, "choices", list, w)
            if not all(isinstance(c, str) for c in choices) or len(choices) < 2:
                raise RecordError(f"{w}: 'choices' must be at least two strings", reason="wrong_type")
            answer = entry_field(p, "answer", int, w)
            if not 0 <= answer < len(choices):
                raise RecordError(f"{w}: answer {answer} is not an index of {len(choices)} choices",
                                  reason="wrong_type")  # fmt: skip
            file = folder / str(entry_field(p, "split", str, w)) / pid / entry_field(p, "image", str, w)
            return {"id": pid, "image": load_image(file, w),
                    "question": entry_field(p, "question", str, w).strip(),
                    "context": str(p.get("hint") or ""), "choices": choices, "answer": answer,
                    "explanation": str(p.get("solution") or "")}  # fmt: skip

        record = ctx.build(make)
        if record is not None:
            yield record
