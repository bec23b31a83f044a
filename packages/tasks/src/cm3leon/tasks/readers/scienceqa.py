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
``image_dir=`` overrides.  ``problems.json`` is parsed by :mod:`cm3leon.core.formats.scienceqa`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.formats import scienceqa as scienceqa_format
from cm3leon.tasks.readers.common import (
    ReadContext,
    find_annotation_file,
    load_image,
    pick_image_dir,
    reader,
)

__all__ = ["read_scienceqa"]


@reader
def read_scienceqa(path: Path, *, split: str | None, ctx: ReadContext,
                   image_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One :class:`ScienceQARecord` per problem with an image: ``{"id": "<pid>", ...}``."""
    ann_file = find_annotation_file(path, ("problems.json",), None, "ScienceQA problems")
    problems = scienceqa_format.load_problems(ann_file)
    selected = [(pid, p) for pid, p in problems.items()
                if split is None or not isinstance(p, dict) or p.get("split") == split]  # fmt: skip
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here = ann_file.parent
        names = (scienceqa_format.problem_image(pid, p) for pid, p in selected[:50])
        probes = [[name] for name in names if name is not None][:8]
        folder = pick_image_dir([here / "images", here.parent / "images", here.parent.parent / "images"],
                                probes, ann_file)  # fmt: skip
    for pid, problem in selected:
        where = f"{ann_file}: problem {pid!r}"
        if isinstance(problem, dict) and problem.get("image") is None and "image" in problem:
            ctx.filtered("no_image")
            continue

        def make(p: Any = problem, w: str = where, pid: str = pid) -> dict:
            row = scienceqa_format.parse_problem(p, w)
            image = load_image(folder / row.split / pid / str(row.image), w)
            return {"id": pid, "image": image, "question": row.question.strip(), "context": row.hint,
                    "choices": list(row.choices), "answer": row.answer, "explanation": row.solution}  # fmt: skip

        record = ctx.build(make)
        if record is not None:
            yield record
