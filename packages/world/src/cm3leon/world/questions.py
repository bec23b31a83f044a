"""Questions about a scene with human-style answers: VQA v2, OK-VQA and VizWiz.

Every open-ended question gets ten answers, as in VQA v2 and VizWiz: most agree on the
canonical answer, some use a variant a person might write (``"two"`` for ``"2"``,
``"middle"`` for ``"center"``) and a few are wrong, so the official VQA accuracy
(min(#matches / 3, 1) over leave-one-out subsets) is exercised realistically.  The
canonical answer is always the most frequent one (at least 6 of 10).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.world.language import PLURALS, referring_expression
from cm3leon.world.render import occlusions
from cm3leon.world.scene import COLOURS, POSES, SHAPES, WORDS, Scene

__all__ = [
    "Question",
    "okvqa_questions",
    "ten_answers",
    "vizwiz_question",
    "vqa_questions",
]

_VARIANTS: dict[str, tuple[str, ...]] = {
    "0": ("zero", "none"), "1": ("one",), "2": ("two",), "3": ("three",), "4": ("four",),
    "12": ("twelve",),
    "red": ("dark red", "crimson"), "yellow": ("gold", "yellow and gold"),
    "green": ("dark green", "lime"), "cyan": ("light blue", "turquoise", "teal"),
    "blue": ("dark blue", "royal blue"), "purple": ("violet", "lavender"),
    "circle": ("round", "dot", "oval"), "square": ("box", "rectangle"),
    "triangle": ("pyramid", "triangular"), "cross": ("plus", "plus sign", "x"),
    "top left": ("upper left", "top left corner"), "top": ("up", "at top"),
    "top right": ("upper right", "top right corner"), "left": ("left side",),
    "center": ("middle", "centre"), "right": ("right side",),
    "bottom left": ("lower left", "bottom left corner"), "bottom": ("down", "at bottom"),
    "bottom right": ("lower right", "bottom right corner"),
    "large": ("big",), "small": ("little", "tiny"),
    "waving": ("saying hi", "waving hello"), "jumping": ("jump",), "standing": ("standing up",),
    "kicking": ("kick",), "raising arms": ("arms up", "cheering"), "stretching": ("arms out",),
}  # fmt: skip
_POSE_ANSWER = {
    "standing": "standing", "arms up": "raising arms", "arms out": "stretching",
    "waving": "waving", "jumping": "jumping", "kicking": "kicking",
}  # fmt: skip


@dataclass(frozen=True)
class Question:
    """One open-ended question with ten annotator answers.

    Attributes:
        question: the question text.
        answer: canonical (most frequent) answer.
        answers: ten annotator answers.
        confidences: ten ``"yes"``/``"maybe"``/``"no"`` annotator confidences.
        answer_type: ``"yes/no"``, ``"number"``, ``"other"`` or ``"unanswerable"``.
        question_type: the question's opening words (VQA v2) or knowledge category (OK-VQA).
        answerable: False only for VizWiz questions the image cannot answer.
    """

    question: str
    answer: str
    answers: tuple[str, ...]
    confidences: tuple[str, ...]
    answer_type: str
    question_type: str
    answerable: bool = True


# ----------------------------------------------------------------- answers
def ten_answers(
    answer: str,
    rng: np.random.Generator,
    wrong: Sequence[str] = (),
    *,
    variants: Sequence[str] | None = None,
    p_variant: float = 0.15,
    p_wrong: float = 0.05,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Ten noisy annotator answers whose most frequent value is ``answer``.

    Args:
        answer: the canonical answer.
        rng: randomness.
        wrong: plausible wrong answers (annotator mistakes).
        variants: acceptable alternative phrasings (default: the built-in table).
        p_variant: probability that an annotator writes a variant.
        p_wrong: probability that an annotator is wrong.

    Returns:
        ``(answers, confidences)``, ten of each.
    """
    variants = tuple(_VARIANTS.get(answer, ()) if variants is None else variants)
    wrong = tuple(w for w in wrong if w != answer)
    answers, conf = [], []
    for _ in range(10):
        u = float(rng.random())
        if wrong and u < p_wrong:
            answers.append(wrong[int(rng.integers(len(wrong)))])
            conf.append("maybe" if rng.random() < 0.5 else "no")
        elif variants and u < p_wrong + p_variant:
            answers.append(variants[int(rng.integers(len(variants)))])
            conf.append("yes" if rng.random() < 0.6 else "maybe")
        else:
            answers.append(answer)
            conf.append("yes")
    # The canonical answer must be the clear majority (>= 6 of 10).
    noisy = [i for i, a in enumerate(answers) if a != answer]
    for i in noisy[: max(0, len(noisy) - 4)]:
        answers[i], conf[i] = answer, "yes"
    return tuple(answers), tuple(conf)


def _q(
    text: str, answer: str, rng, *, atype: str, qtype: str, wrong=(), variants=None, **kw
) -> Question:
    answers, conf = ten_answers(answer, rng, wrong, variants=variants, **kw)
    assert Counter(answers).most_common(1)[0][0] == answer
    return Question(text, answer, answers, conf, atype, qtype)


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


# --------------------------------------------------------------------- VQA
# Candidates are thunks: building the list draws only the randomness that chooses *which*
# questions exist (a shape to count, a colour-shape pair to ask about, the direction of an
# occlusion question); the answers are drawn when a chosen candidate is called.  The three
# builders run in this order, which fixes the random stream.
def _vqa_candidates(scene: Scene, rng: np.random.Generator) -> list[Callable[[], Question]]:
    return [
        *_object_candidates(scene, rng),
        *_scene_candidates(scene, rng),
        *_occlusion_candidates(scene, rng),
    ]


def _object_candidates(scene: Scene, rng: np.random.Generator) -> list[Callable[[], Question]]:
    """Colour, shape, position and size questions about each object."""
    objs = scene.objects
    cands: list[Callable[[], Question]] = []
    for k, obj in enumerate(objs):
        ref = referring_expression(scene, k)
        if ref == f"the {obj.shape}":
            cands.append(
                lambda o=obj: _q(
                    f"What color is the {o.shape}?",
                    o.colour,
                    rng,
                    atype="other",
                    qtype="what color is the",
                    wrong=list(COLOURS),
                )
            )
        if sum(o.colour == obj.colour for o in objs) == 1:
            cands.append(
                lambda o=obj: _q(
                    f"What shape is the {o.colour} object?",
                    o.shape,
                    rng,
                    atype="other",
                    qtype="what shape is the",
                    wrong=list(SHAPES),
                )
            )
        cands.append(
            lambda o=obj, r=ref: _q(
                f"Where is {r}?",
                o.position,
                rng,
                atype="other",
                qtype="where is the",
                wrong=["center", "left", "right"],
            )
        )
        cands.append(
            lambda o=obj, r=ref: _q(
                f"Is {r} large or small?",
                o.size,
                rng,
                atype="other",
                qtype="is the",
                wrong=["large", "small"],
            )
        )
    return cands


def _scene_candidates(scene: Scene, rng: np.random.Generator) -> list[Callable[[], Question]]:
    """Counting and presence questions, then the person's pose and the written word."""
    cands = _count_and_presence_candidates(scene, rng)
    if scene.figure is not None:
        pose = _POSE_ANSWER[scene.figure.pose]
        cands.append(
            lambda: _q(
                "What is the person doing?",
                pose,
                rng,
                atype="other",
                qtype="what is the person",
                wrong=list(_POSE_ANSWER.values()),
            )
        )
    if scene.text is not None:
        word = scene.text.word.lower()
        cands.append(
            lambda: _q(
                "What word is written on the wall?",
                word,
                rng,
                atype="other",
                qtype="what",
                wrong=[w.lower() for w in WORDS],
                variants=(f"{word} sign",),
            )
        )
    return cands


def _count_and_presence_candidates(
    scene: Scene, rng: np.random.Generator
) -> list[Callable[[], Question]]:
    """How many shapes / how many of one shape; is there a colour-shape pair / a person."""
    objs = scene.objects
    colours, shapes, numbers = list(COLOURS), list(SHAPES), ["1", "2", "3", "4"]
    cands: list[Callable[[], Question]] = [
        lambda: _q(
            "How many shapes are there?",
            str(len(objs)),
            rng,
            atype="number",
            qtype="how many",
            wrong=numbers,
        )
    ]
    shape = _pick(rng, shapes)
    count = sum(o.shape == shape for o in objs)
    cands.append(
        lambda: _q(
            f"How many {PLURALS[shape]} are in the picture?",
            str(count),
            rng,
            atype="number",
            qtype="how many",
            wrong=numbers,
        )
    )
    present = {(o.colour, o.shape) for o in objs}
    if rng.random() < 0.5:
        colour, shape2 = _pick(rng, sorted(present))
    else:
        absent = [(c, s) for c in colours for s in shapes if (c, s) not in present]
        colour, shape2 = _pick(rng, absent)
    yes = "yes" if (colour, shape2) in present else "no"
    has_person = "yes" if scene.figure is not None else "no"
    for text, answer in [
        (f"Is there a {colour} {shape2}?", yes),
        ("Is there a person in the picture?", has_person),
    ]:
        cands.append(
            lambda t=text, a=answer: _q(
                t, a, rng, atype="yes/no", qtype="is there a", wrong=["yes", "no"], variants=()
            )
        )
    return cands


def _occlusion_candidates(scene: Scene, rng: np.random.Generator) -> list[Callable[[], Question]]:
    """One "Is X in front of Y?" per occluding pair, asked either way round (a coin flip)."""
    cands: list[Callable[[], Question]] = []
    for i, j in occlusions(scene):
        ra, rb = referring_expression(scene, i), referring_expression(scene, j)
        if rng.random() < 0.5:
            text, answer, wrong = f"Is {ra} in front of {rb}?", "yes", ["no"]
        else:
            text, answer, wrong = f"Is {rb} in front of {ra}?", "no", ["yes"]
        cands.append(
            lambda t=text, a=answer, w=wrong: _q(
                t, a, rng, atype="yes/no", qtype="is the", wrong=w, variants=()
            )
        )
    return cands


def _draw(
    cands: Sequence[Callable[[], Question]], rng: np.random.Generator, n: int
) -> list[Question]:
    """Up to ``n`` candidates in a random order, calling each; repeated texts are dropped."""
    order = rng.permutation(len(cands))[:n]
    out, seen = [], set()
    for i in order:
        q = cands[int(i)]()
        if q.question not in seen:
            seen.add(q.question)
            out.append(q)
    return out


def vqa_questions(scene: Scene, rng: np.random.Generator, n: int = 3) -> list[Question]:
    """Up to ``n`` distinct VQA v2-style questions about ``scene``."""
    return _draw(_vqa_candidates(scene, rng), rng, n)


# ------------------------------------------------------------------- OK-VQA
_SIDES = {"triangle": "3", "square": "4", "circle": "0", "cross": "12"}
_FRUIT = {
    "red": ("apple", "strawberry", "cherry"), "yellow": ("banana", "lemon"),
    "green": ("lime", "pear", "apple"), "blue": ("blueberry",), "purple": ("grape", "plum"),
}  # fmt: skip
_SAME_SHAPE = {
    "circle": ("ball", "wheel", "coin"), "square": ("box", "window", "tile"),
    "triangle": ("pizza slice", "yield sign", "pyramid"), "cross": ("plus sign", "hospital sign"),
}  # fmt: skip
_ANIMAL_SOUND = {
    "CAT": ("meow",),
    "DOG": ("woof", "bark"),
    "LION": ("roar",),
    "BIRD": ("tweet", "chirp"),
}
_OPPOSITE = {
    "OPEN": "closed", "STOP": "go", "HAPPY": "sad", "SUN": "moon", "MOON": "sun",
    "LOVE": "hate", "RAIN": "sunshine", "EXIT": "entrance", "HELLO": "goodbye",
}  # fmt: skip


def _knowledge(
    answers: Sequence[str], text: str, rng, qtype: str, wrong, atype="other"
) -> Question:
    return _q(
        text,
        answers[0],
        rng,
        atype=atype,
        qtype=qtype,
        wrong=wrong,
        variants=tuple(answers[1:]),
        p_variant=0.3,
    )


def okvqa_questions(scene: Scene, rng: np.random.Generator, n: int = 2) -> list[Question]:
    """Up to ``n`` OK-VQA-style questions needing outside knowledge.

    ``question_type`` uses OK-VQA's category codes (``"three"`` objects and materials,
    ``"five"`` cooking and food, ``"six"`` language and culture, ``"eight"`` plants and
    animals, ``"nine"`` science and technology).
    """
    cands: list[Callable[[], Question]] = []
    objs = scene.objects
    for k, obj in enumerate(objs):
        ref = referring_expression(scene, k)
        cands.append(
            lambda o=obj, r=ref: _knowledge(
                [_SIDES[o.shape]],
                f"How many sides does {r} have?",
                rng,
                "nine",
                list(_SIDES.values()),
                "number",
            )
        )
        if obj.colour in _FRUIT:
            cands.append(
                lambda o=obj, r=ref: _knowledge(
                    _FRUIT[o.colour],
                    f"Name a fruit that has the same color as {r}.",
                    rng,
                    "five",
                    [f for v in _FRUIT.values() for f in v],
                )
            )
        cands.append(
            lambda o=obj, r=ref: _knowledge(
                _SAME_SHAPE[o.shape],
                f"What everyday object has the same shape as {r}?",
                rng,
                "three",
                [f for v in _SAME_SHAPE.values() for f in v],
            )
        )
    if scene.text is not None and scene.text.word in _ANIMAL_SOUND:
        cands.append(
            lambda: _knowledge(
                _ANIMAL_SOUND[scene.text.word],
                "What sound does the animal named on the wall make?",
                rng,
                "eight",
                [s for v in _ANIMAL_SOUND.values() for s in v],
            )
        )
    if scene.text is not None and scene.text.word in _OPPOSITE:
        cands.append(
            lambda: _knowledge(
                [_OPPOSITE[scene.text.word]],
                "What is the opposite of the word written on the wall?",
                rng,
                "six",
                list(_OPPOSITE.values()),
            )
        )
    return _draw(cands, rng, n)


# ------------------------------------------------------------------- VizWiz
def vizwiz_question(scene: Scene, rng: np.random.Generator) -> Question:
    """One VizWiz-style question, as a blind photographer might ask it.

    Questions about text when there is none are unanswerable: most annotators answer
    ``"unanswerable"`` and the question is marked ``answerable=False``.
    """
    objs = scene.objects
    kind = _pick(rng, ["colour", "what", "read", "count", "person"])
    if kind == "read":
        if scene.text is None:
            answers, conf = ten_answers(
                "unanswerable", rng, ["nothing", "no text"], variants=("unsuitable",)
            )
            return Question(
                "What does this say?",
                "unanswerable",
                answers,
                conf,
                "unanswerable",
                "what does this",
                answerable=False,
            )
        word = scene.text.word.lower()
        return _q(
            "What does this say?",
            word,
            rng,
            atype="other",
            qtype="what does this",
            wrong=["unanswerable"],
            variants=(f"it says {word}",),
        )
    if kind == "count":
        return _q(
            "How many shapes are in this picture?",
            str(len(objs)),
            rng,
            atype="number",
            qtype="how many",
            wrong=["1", "2", "3", "unanswerable"],
        )
    if kind == "person":
        yes = "yes" if scene.figure is not None else "no"
        return _q(
            "Is there a person in this picture?",
            yes,
            rng,
            atype="yes/no",
            qtype="is there a",
            wrong=["yes", "no", "unanswerable"],
            variants=(),
        )
    k = int(rng.integers(len(objs)))
    obj = objs[k]
    if kind == "colour":
        text = (
            "What color is this?"
            if len(objs) == 1
            else f"What color is {referring_expression(scene, k)}?"
        )
        return _q(text, obj.colour, rng, atype="other", qtype="what color is", wrong=list(COLOURS))
    text = (
        "What is this?"
        if len(objs) == 1
        else f"What is {('in the ' + obj.position) if obj.position != 'center' else 'in the middle'}?"
    )
    return _q(
        text,
        obj.label,
        rng,
        atype="other",
        qtype="what is",
        wrong=[f"{obj.colour} shape", "unanswerable"],
        variants=(obj.shape, f"a {obj.label}"),
    )


assert set(_POSE_ANSWER) == set(POSES)
