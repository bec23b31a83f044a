"""ScienceQA (Lu et al., 2022), Table 5: 6k examples (the problems with an image).

Templates (Table 5; the second asks for a chain of thought, drawn only when the
problem has an explanation, ScienceQA's ``solution``)::

    Question: {question} [newline] Context: {context} [newline] Options: {choices_text} [newline] Answer: {answer}. <break> {image}
    Question: {question} [newline] Context: {context} [newline] Options: {choices_text} [newline] Answer: Let's think step-by-step: {explanation} So the answer is {answer}. <break> {image}

``[newline]`` is a line break, ``{choices_text}`` lists the options as
``(A) ... (B) ...``, ``{answer}`` is the text of the correct option and an empty
context renders as ``N/A``.  The target (``meta["targets"]``) is ``{answer}``, or in the
chain-of-thought template everything from ``{explanation}`` to ``{answer}`` (the
reasoning and the answer the model writes after "Let's think step-by-step:").  Rendered with template 0::

    Question: Which animal's feet are also adapted for sticky surfaces?
    Context: N/A
    Options: (A) tree frog (B) harbor seal
    Answer: tree frog. <break> [image]

Reader: :func:`cm3leon.tasks.readers.scienceqa.read_scienceqa`
(``problems.json`` + ``images/<split>/<pid>/image.png``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.tasks.records import (
    RecordError,
    ScienceQARecord,
    as_str_list,
    record_id,
    require,
    require_image,
    require_str,
)
from cm3leon.tasks.synthetic import synthetic_scene
from cm3leon.tasks.template import TemplateSet

__all__ = ["TEMPLATES", "ScienceQATask", "choice_letter", "scienceqa"]

TEMPLATES = (
    "Question: {question} [newline] Context: {context} [newline] Options: {choices_text} "
    "[newline] Answer: {answer}. <break> {image}",
    "Question: {question} [newline] Context: {context} [newline] Options: {choices_text} "
    "[newline] Answer: Let's think step-by-step: {explanation} So the answer is {answer}. "
    "<break> {image}",
)


def choice_letter(index: int) -> str:
    """``0 -> "A"``, ``1 -> "B"``, ..."""
    return chr(ord("A") + index)


@dataclass(frozen=True)
class ScienceQATask:
    """Render a :class:`~cm3leon.tasks.records.ScienceQARecord`."""

    name: str = "scienceqa"
    templates: tuple[str, ...] = TEMPLATES
    _set: TemplateSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        outputs = ("explanation", "answer")  # one target: from the reasoning to the answer
        object.__setattr__(self, "_set", TemplateSet(self.name, tuple(self.templates), outputs=outputs))

    def render(self, record: ScienceQARecord | dict[str, Any], *, rng: np.random.Generator) -> Document:
        """Render ``record``; ``answer`` must index ``choices``."""
        rid = record_id(record, task=self.name)
        choices = as_str_list(require(record, "choices", list, task=self.name),
                              what=f"task {self.name!r}: record {rid!r}: 'choices'")  # fmt: skip
        answer = require(record, "answer", int, task=self.name)
        if len(choices) < 2 or not 0 <= answer < len(choices):
            raise RecordError(
                f"task {self.name!r}: record {rid!r}: answer {answer} does not index "
                f"{len(choices)} choices"
            )
        context = str(record.get("context") or "").strip() or "N/A"
        explanation = str(record.get("explanation") or "").strip().replace("\n", " ") or None
        values = {
            "question": require_str(record, "question", task=self.name),
            "context": context.replace("\n", " "),
            "choices_text": " ".join(f"({choice_letter(i)}) {c}" for i, c in enumerate(choices)),
            "answer": choices[answer].rstrip("."),
            "explanation": explanation,
        }
        return self._set.render(
            record_id=rid,
            values=values,
            images={"image": require_image(record, "image", task=self.name)},
            rng=rng,
            meta={"choices": choices, "answer": answer, "answer_letter": choice_letter(answer)},
        )

    def example(self, rng: np.random.Generator) -> ScienceQARecord:
        """A small synthetic multiple-choice problem."""
        scene = synthetic_scene(rng, max_objects=1)
        label = scene["objects"][0]["label"]
        shape = label.split()[1]
        other = "circle" if shape == "square" else "square"
        choices = [shape, other] if rng.random() < 0.5 else [other, shape]
        return {"id": f"example-{int(rng.integers(1 << 30))}", "image": scene["image"],
                "question": "Which shape is shown?", "context": "Look at the picture.",
                "choices": choices, "answer": choices.index(shape),
                "explanation": f"The picture shows one {label}."}  # fmt: skip


def scienceqa() -> ScienceQATask:
    """The ScienceQA task."""
    return ScienceQATask()
