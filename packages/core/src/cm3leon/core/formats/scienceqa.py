"""ScienceQA (Lu et al., 2022) -- read and written.

Format::

    problems.json     {"<pid>": {"question": "...", "choices": ["...", "..."], "answer": 0,
                                 "hint": "<context>", "image": "image.png" | null,
                                 "task": "closed choice", "grade": "grade3", "subject": ...,
                                 "topic": ..., "category": ..., "skill": ...,
                                 "lecture": "...", "solution": "<explanation>",
                                 "split": "train" | "val" | "test"}, ...}
    pid_splits.json   {"train": ["<pid>", ...], "val": [...], "test": [...]}
    images/<split>/<pid>/<image>
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.formats.common import EntryError, entry_field, load_json, write_json

__all__ = ["Problem", "load_problems", "parse_problem", "problem_image", "write_scienceqa"]


@dataclass(frozen=True)
class Problem:
    """One ScienceQA problem (``image`` is None for text-only problems)."""

    question: str
    choices: tuple[str, ...]
    answer: int
    split: str
    image: str | None = None
    hint: str = ""
    lecture: str = ""
    solution: str = ""
    task: str = ""
    grade: str = ""
    subject: str = ""
    topic: str = ""
    category: str = ""
    skill: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"choices": list(self.choices)}


def load_problems(path: Path) -> dict[str, Any]:
    """``pid -> raw problem`` of ``problems.json`` (checked by :func:`parse_problem`)."""
    return load_json(path, dict)


def problem_image(pid: str, problem: Any) -> str | None:
    """``<split>/<pid>/<image>`` under ``images/`` for a raw problem, None without an image."""
    if isinstance(problem, dict) and isinstance(problem.get("image"), str):
        return f"{problem.get('split')}/{pid}/{problem['image']}"
    return None


def parse_problem(entry: Any, where: str) -> Problem:
    """A problem checked: >= 2 string choices, ``answer`` an index of them, ``split``,
    ``image`` (a file name, or null for a text-only problem) and ``question``."""
    choices = entry_field(entry, "choices", list, where)
    if not all(isinstance(c, str) for c in choices) or len(choices) < 2:
        raise EntryError(f"{where}: 'choices' must be at least two strings", reason="wrong_type")
    answer = entry_field(entry, "answer", int, where)
    if not 0 <= answer < len(choices):
        raise EntryError(f"{where}: answer {answer} is not an index of {len(choices)} choices", reason="wrong_type")
    split = entry_field(entry, "split", str, where)
    image = None if entry.get("image", "") is None else entry_field(entry, "image", str, where)
    question = entry_field(entry, "question", str, where)
    text = {k: str(entry.get(k) or "") for k in ("hint", "lecture", "solution", "task", "grade", "subject",
                                                  "topic", "category", "skill")}  # fmt: skip
    return Problem(question, tuple(choices), answer, split, image, **text)


def write_scienceqa(root: Path, problems: Mapping[str, Problem], splits: Mapping[str, Sequence[str]]) -> None:
    """``root/problems.json`` and ``root/pid_splits.json`` (images are written by the caller)."""
    write_json(root / "problems.json", {pid: p.to_dict() for pid, p in problems.items()})
    write_json(root / "pid_splits.json", {k: list(v) for k, v in splits.items()})
