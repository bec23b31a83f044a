"""Shared visual question answering task (VQA2, VizWiz, OKVQA).

Table 5 gives the three datasets the same three templates.  The training target is
the record's ``answer`` (readers pick the most frequent annotator answer), marked as the
document's target (``meta["targets"]``: the characters of ``{answer}`` only, not the
template words around it); every annotator answer is kept in the document's
``meta["answers"]`` for VQA accuracy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.tasks.records import (
    RecordError,
    VQARecord,
    as_str_list,
    record_id,
    require_image,
    require_str,
)
from cm3leon.tasks.synthetic import synthetic_scene
from cm3leon.tasks.template import TemplateSet

__all__ = ["VQA_TEMPLATES", "VQATask", "majority_answer"]

VQA_TEMPLATES = (
    "Question: {question} Answer: {answer}. <break> {image}",
    "Question: {question} [newline] {answer} <break> {image}",
    "Question: {question} The answer is {answer}. <break> {image}",
)


def majority_answer(answers: Sequence[str]) -> str:
    """Most frequent answer; ties go to the answer seen first (deterministic)."""
    if not answers:
        raise ValueError("no answers to choose from")
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


@dataclass(frozen=True)
class VQATask:
    """Render a :class:`~cm3leon.tasks.records.VQARecord` (``question``, ``answer``, ``image``)."""

    name: str
    templates: tuple[str, ...] = VQA_TEMPLATES
    _set: TemplateSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_set", TemplateSet(self.name, tuple(self.templates), outputs=("answer",)))

    def render(self, record: VQARecord | dict[str, Any], *, rng: np.random.Generator) -> Document:
        """Render ``record``; the answer is stripped of a trailing period (templates add one)."""
        rid = record_id(record, task=self.name)
        question = require_str(record, "question", task=self.name)
        answer = require_str(record, "answer", task=self.name).rstrip(".")
        if not answer:
            raise RecordError(f"task {self.name!r}: record {rid!r}: 'answer' is only punctuation")
        answers = as_str_list(record.get("answers", [answer]), what=f"record {rid!r} 'answers'")
        return self._set.render(
            record_id=rid,
            values={"question": question, "answer": answer},
            images={"image": require_image(record, "image", task=self.name)},
            rng=rng,
            meta={"question": question, "answer": answer, "answers": answers},
        )

    def example(self, rng: np.random.Generator) -> VQARecord:
        """A small synthetic record: how many objects are in the scene."""
        scene = synthetic_scene(rng)
        n = str(len(scene["objects"]))
        return {"id": f"example-{int(rng.integers(1 << 30))}", "image": scene["image"],
                "question": "How many shapes are there?", "answer": n, "answers": [n] * 10}  # fmt: skip
