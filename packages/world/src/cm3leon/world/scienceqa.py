"""ScienceQA-style multiple-choice problems about a scene, with context, lecture and solution.

Each problem needs the picture: which shape an object is, which of two overlapping
objects is closer (occlusion), which direction one object is from another, which is
larger, or which word is written.  Choices are shuffled; ``answer`` indexes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cm3leon.world.language import position_phrase
from cm3leon.world.render import occlusions
from cm3leon.world.scene import SHAPES, WORDS, Scene, WorldObject

__all__ = ["ScienceProblem", "scienceqa_problem"]


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


@dataclass(frozen=True)
class ScienceProblem:
    """A ScienceQA-style multiple-choice problem about the picture."""

    question: str
    choices: tuple[str, ...]
    answer: int
    hint: str
    lecture: str
    solution: str
    subject: str
    topic: str
    category: str
    skill: str
    grade: str
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------- ScienceQA
_SHAPE_FACTS = {
    "circle": "A circle is round and has no straight sides or corners.",
    "square": "A square has four straight sides of the same length and four corners.",
    "triangle": "A triangle has three straight sides and three corners.",
    "cross": "A cross is made of two bars that meet in the middle, like a plus sign; it has twelve sides.",
}
_SHAPE_LECTURE = "Shapes can be told apart by counting their sides and corners. " + " ".join(
    _SHAPE_FACTS.values()
)
_DEPTH_LECTURE = (
    "When two things overlap in a picture, the one in front hides part of the one behind it. "
    "The thing in front is closer to the viewer."
)
_DIRECTION_LECTURE = (
    "Directions tell you where one thing is compared to another. In a picture, up is toward the top, "
    "down is toward the bottom, left is toward the left edge and right is toward the right edge."
)
_SIZE_LECTURE = "To compare the sizes of two things, look at how much space each one takes up."
_WORD_LECTURE = (
    "Letters are put together to make words. Read the letters from left to right to read a word."
)


def _choices(
    answer: str, pool: Sequence[str], rng: np.random.Generator, k: int
) -> tuple[tuple[str, ...], int]:
    others = [p for p in dict.fromkeys(pool) if p != answer]
    if not others:
        raise ValueError(
            f"no distractor for {answer!r}: a multiple-choice problem needs two choices"
        )
    picks = [others[int(i)] for i in rng.permutation(len(others))[: k - 1]]
    choices = picks + [answer]
    order = rng.permutation(len(choices))
    choices = [choices[int(i)] for i in order]
    return tuple(choices), choices.index(answer)


def scienceqa_problem(scene: Scene, rng: np.random.Generator) -> ScienceProblem:
    """One ScienceQA-style multiple-choice problem whose answer needs the picture."""
    kind = _pick(rng, _kinds(scene))
    grade = _pick(rng, ["grade1", "grade2", "grade3"])
    return _BUILDERS[kind](scene, rng, grade)


def _kinds(scene: Scene) -> list[str]:
    """The problem kinds ``scene`` supports, repeated to weight the draw (shape and depth twice)."""
    objs = scene.objects
    kinds = ["shape", "shape"]
    if occlusions(scene):
        kinds += ["depth", "depth"]
    if _direction_partner(scene) is not None:
        kinds.append("direction")
    if len({o.size for o in objs}) == 2:
        kinds.append("size")
    if scene.text is not None:
        kinds.append("word")
    return kinds


def _direction_partner(scene: Scene) -> WorldObject | None:
    """The first object sharing a grid row or column with the first object, if any."""
    objs = scene.objects
    return next(
        (o for o in objs[1:] if objs[0].cell[0] == o.cell[0] or objs[0].cell[1] == o.cell[1]),
        None,
    )


def _shape_problem(scene: Scene, rng: np.random.Generator, grade: str) -> ScienceProblem:
    objs = scene.objects
    obj = objs[int(rng.integers(len(objs)))]
    choices, ans = _choices(obj.shape, SHAPES, rng, 3)
    return ScienceProblem(
        f"What shape is the {obj.colour} object?"
        if sum(o.colour == obj.colour for o in objs) == 1
        else f"What shape is the object {_where(obj.position)}?",
        choices,
        ans,
        f"Look at the {obj.colour} object in the picture.",
        _SHAPE_LECTURE,
        f"Count the sides and corners of the {obj.colour} object. {_SHAPE_FACTS[obj.shape]} "
        f"The {obj.colour} object matches this description.",
        "natural science",
        "geometry",
        "Identify shapes",
        "Identify two-dimensional shapes",
        grade,
    )


def _depth_problem(scene: Scene, rng: np.random.Generator, grade: str) -> ScienceProblem:
    i, j = _pick(rng, occlusions(scene))
    front, back = scene.objects[i].label, scene.objects[j].label
    choices, ans = _choices(f"the {front}", [f"the {back}"], rng, 2)
    return ScienceProblem(
        "Which object is closer to the viewer?",
        choices,
        ans,
        f"The {front} and the {back} overlap in the picture.",
        _DEPTH_LECTURE,
        f"Look where the two shapes overlap. The {front} hides part of the {back}, so the {front} "
        "is in front of it.",
        "natural science",
        "physics",
        "Depth and overlap",
        "Use overlap to tell which object is closer",
        grade,
    )


def _direction_problem(scene: Scene, rng: np.random.Generator, grade: str) -> ScienceProblem:
    a, b = scene.objects[0], _direction_partner(scene)
    assert b is not None  # _kinds offers "direction" only when there is a partner
    if a.cell[0] == b.cell[0]:
        direction = "left" if a.cell[1] < b.cell[1] else "right"
    else:
        direction = "up" if a.cell[0] < b.cell[0] else "down"
    choices, ans = _choices(direction, ["left", "right", "up", "down"], rng, 4)
    return ScienceProblem(
        f"Which direction is the {a.label} from the {b.label}?",
        choices,
        ans,
        f"The picture shows a {a.label} and a {b.label}.",
        _DIRECTION_LECTURE,
        f"Find the {b.label}, then look for the {a.label}. The {a.label} is {_where(a.position)} and the "
        f"{b.label} is {_where(b.position)}, so you move {direction} to get from the {b.label} to the {a.label}.",
        "social science",
        "geography",
        "Cardinal directions",
        "Use directions in a picture",
        grade,
    )


def _size_problem(scene: Scene, rng: np.random.Generator, grade: str) -> ScienceProblem:
    big = next(o for o in scene.objects if o.size == "large")
    small = next(o for o in scene.objects if o.size == "small")
    a, b = f"large {big.label}", f"small {small.label}"
    choices, ans = _choices(f"the {a}", [f"the {b}"], rng, 2)
    return ScienceProblem(
        "Which object is larger?",
        choices,
        ans,
        f"Compare the {a} and the {b}.",
        _SIZE_LECTURE,
        f"The {a} takes up more space in the picture than the {b}.",
        "natural science",
        "units and measurement",
        "Compare sizes",
        "Compare sizes of objects",
        grade,
    )


def _word_problem(scene: Scene, rng: np.random.Generator, grade: str) -> ScienceProblem:
    assert scene.text is not None  # _kinds offers "word" only with text
    word = scene.text.word
    choices, ans = _choices(word.lower(), [w.lower() for w in WORDS if len(w) == len(word)], rng, 3)
    return ScienceProblem(
        "Which word is written in the picture?",
        choices,
        ans,
        "Read the black letters on the wall.",
        _WORD_LECTURE,
        f"The letters are {', '.join(word)}. Together they spell {word.lower()}.",
        "language science",
        "reading",
        "Read words",
        "Read short words",
        grade,
    )


_BUILDERS: dict[str, Callable[[Scene, np.random.Generator, str], ScienceProblem]] = {
    "shape": _shape_problem,
    "depth": _depth_problem,
    "direction": _direction_problem,
    "size": _size_problem,
    "word": _word_problem,
}


def _where(position: str) -> str:
    return position_phrase(position)
