"""Text about a scene, produced from its ground truth.

* :func:`captions` -- at least five different one-sentence phrasings (COCO-style
  references, so CIDEr has several references per image), each naming the colour and
  shape of every object; the first one,
  :func:`canonical_caption`, lists every element with size, colour, shape and position
  and is what :func:`parse_caption` reads back.
* :func:`paragraph` -- an Image-Paragraph-style multi-sentence description.
* :func:`narrative` -- a Localized-Narratives-style spoken description with a mouse
  trace and word timings.
* :func:`referring_expression` -- the shortest unambiguous name of an object
  (used by questions and edit instructions).

Everything is deterministic given the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cm3leon.world.render import occlusions
from cm3leon.world.scene import (
    CELL_NAMES,
    COLOURS,
    SHAPES,
    SIZES,
    Scene,
    StickFigure,
    WorldObject,
)

__all__ = [
    "NUMBER_WORDS",
    "PLURALS",
    "ObjectSpec",
    "canonical_caption",
    "captions",
    "count_phrase",
    "figure_phrase",
    "narrative",
    "object_phrase",
    "paragraph",
    "parse_caption",
    "position_phrase",
    "reading_order",
    "referring_expression",
    "text_phrase",
]

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_POSITION_PHRASES: dict[str, str] = {
    "top left": "in the top left corner",
    "top": "at the top",
    "top right": "in the top right corner",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left corner",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}
_POSE_PHRASES: dict[str, str] = {
    "standing": "standing",
    "arms up": "with both arms up",
    "arms out": "with arms stretched out",
    "waving": "waving",
    "jumping": "jumping",
    "kicking": "kicking",
}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}


@dataclass(frozen=True)
class ObjectSpec:
    """What a caption says about one object (fields it does not mention are ``None``)."""

    colour: str | None
    shape: str | None
    size: str | None = None
    position: str | None = None

    @classmethod
    def of(cls, obj: WorldObject) -> ObjectSpec:
        return cls(obj.colour, obj.shape, obj.size, obj.position)


# ----------------------------------------------------------------- phrases
def position_phrase(position: str) -> str:
    """``"top left"`` -> ``"in the top left corner"``."""
    try:
        return _POSITION_PHRASES[position]
    except KeyError:
        raise ValueError(
            f"unknown position {position!r}; positions: {', '.join(_POSITION_PHRASES)}"
        ) from None


def object_phrase(obj: WorldObject | ObjectSpec, *, size: bool = True, article: str = "a") -> str:
    """``"a large red circle"`` (``article=""`` drops the article)."""
    words = [article] if article else []
    if size and obj.size:
        words.append(obj.size)
    words += [w for w in (obj.colour, obj.shape) if w]
    return " ".join(words)


def figure_phrase(figure: StickFigure) -> str:
    """``"a person waving"``."""
    return f"a person {_POSE_PHRASES[figure.pose]}"


def text_phrase(scene: Scene) -> str:
    """``'the word "CAT"'`` (empty when the scene has no text)."""
    return f'the word "{scene.text.word}"' if scene.text is not None else ""


def count_phrase(n: int, noun: str = "shape") -> str:
    """``"three shapes"``, ``"one shape"``."""
    word = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    return f"{word} {noun}{'' if n == 1 else 's'}"


def reading_order(scene: Scene) -> list[int]:
    """Object indices sorted top-to-bottom, left-to-right by cell."""
    return sorted(range(len(scene.objects)), key=lambda k: (scene.objects[k].cell, k))


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def referring_expression(scene: Scene, k: int) -> str:
    """The shortest unambiguous name of object ``k``: ``"the circle"``, ``"the red circle"``...

    Falls back to adding size and then position; positions are unique per object.
    """
    obj = scene.objects[k]
    others = [o for i, o in enumerate(scene.objects) if i != k]
    if not any(o.shape == obj.shape for o in others):
        return f"the {obj.shape}"
    if not any(o.label == obj.label for o in others):
        return f"the {obj.label}"
    if not any(o.label == obj.label and o.size == obj.size for o in others):
        return f"the {obj.size} {obj.label}"
    return f"the {obj.label} {position_phrase(obj.position)}"


# ----------------------------------------------------------------- captions
def _element_phrases(scene: Scene, *, size: bool, position: bool) -> list[str]:
    parts = []
    for k in reading_order(scene):
        obj = scene.objects[k]
        p = object_phrase(obj, size=size)
        parts.append(f"{p} {position_phrase(obj.position)}" if position else p)
    if scene.figure is not None:
        f = figure_phrase(scene.figure)
        parts.append(f"{f} {position_phrase(scene.figure.position)}" if position else f)
    return parts


def canonical_caption(scene: Scene) -> str:
    """Every element with size, colour, shape and position; :func:`parse_caption` inverts it."""
    text = _join(_element_phrases(scene, size=True, position=True))
    if scene.text is not None:
        text += f" and {text_phrase(scene)} written {position_phrase(scene.text.position)}"
    return _sentence(text)


def _relation(a: WorldObject, b: WorldObject) -> str | None:
    (ra, ca), (rb, cb) = a.cell, b.cell
    if ra == rb:
        return "to the left of" if ca < cb else "to the right of"
    if ca == cb:
        return "above" if ra < rb else "below"
    return None


def _extras(scene: Scene) -> str:
    parts = []
    if scene.figure is not None:
        parts.append(figure_phrase(scene.figure))
    if scene.text is not None:
        parts.append(text_phrase(scene))
    return (" with " + _join(parts)) if parts else ""


def captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` (>= 5) distinct captions; the first is :func:`canonical_caption`."""
    objs = [scene.objects[k] for k in reading_order(scene)]
    shuffled = [objs[int(i)] for i in rng.permutation(len(objs))]
    short = _join([object_phrase(o, size=False) for o in shuffled])
    sized = _join(_element_phrases(scene, size=True, position=False))
    count = count_phrase(len(objs))
    out = [canonical_caption(scene)]
    opener = ["a picture of", "an image of", "a drawing of", "a simple scene with"][
        int(rng.integers(4))
    ]
    out.append(f"{opener} {short}{_extras(scene)}")
    out.append(f"{count} on a light grey wall: {short}")
    pairs = [
        (i, j)
        for i in range(len(objs))
        for j in range(len(objs))
        if i < j and _relation(objs[i], objs[j])
    ]
    if pairs:
        i, j = pairs[int(rng.integers(len(pairs)))]
        rest = [object_phrase(o, size=False) for k, o in enumerate(objs) if k not in (i, j)]
        rel = f"{object_phrase(objs[i], size=False)} {_relation(objs[i], objs[j])} {object_phrase(objs[j], size=False)}"
        out.append(rel + (f" and {_join(rest)}" if rest else ""))
    else:
        out.append(
            f"a plain grey picture with {_join(_element_phrases(scene, size=False, position=True))}"
        )
    front_back = occlusions(scene)
    if front_back:
        i, j = front_back[int(rng.integers(len(front_back)))]
        a, b = scene.objects[i], scene.objects[j]
        rest = [
            object_phrase(o, size=False) for k, o in enumerate(scene.objects) if k not in (i, j)
        ]
        covering = f"{object_phrase(a, size=False)} partly covering {object_phrase(b, size=False)}"
        out.append(covering + (f", next to {_join(rest)}" if rest else ""))
    out.append(
        f"there is {sized}" + (f" and {text_phrase(scene)} on the wall" if scene.text else "")
    )
    fillers = [
        f"{sized} on a light grey background",
        f"a grey wall with {short}",
        f"{short}, drawn in flat colours",
        f"{short} on a plain background",
    ]
    for i in rng.permutation(len(fillers)):
        out.append(fillers[int(i)])
    seen, unique = set(), []
    for c in out:
        c = _sentence(c)
        if c.lower() not in seen:
            seen.add(c.lower())
            unique.append(c)
    if len(unique) < max(5, n):
        raise AssertionError(f"only {len(unique)} distinct captions for scene {scene.index}")
    return unique[: max(5, n)]


# ---------------------------------------------------------------- paragraph
def paragraph(scene: Scene, rng: np.random.Generator) -> str:
    """A 3-8 sentence description in the style of the Stanford Image Paragraph dataset."""
    n = len(scene.objects)
    sents = [
        [
            f"This picture shows {count_phrase(n)} on a light grey wall",
            f"The image contains {count_phrase(n)} drawn on a plain grey background",
            f"There {'is' if n == 1 else 'are'} {count_phrase(n)} in this small picture",
        ][int(rng.integers(3))]
    ]
    templates = [
        "{pos} there is {obj}",
        "{obj} can be seen {pos_l}",
        "{pos} we see {obj}",
    ]
    for k in reading_order(scene):
        obj = scene.objects[k]
        pos_l = position_phrase(obj.position)
        t = templates[int(rng.integers(len(templates)))]
        sents.append(
            t.format(pos=pos_l[:1].upper() + pos_l[1:], pos_l=pos_l, obj=object_phrase(obj))
        )
    for i, j in occlusions(scene):
        a, b = scene.objects[i], scene.objects[j]
        sents.append(
            f"The {a.colour} {a.shape} covers part of the {b.colour} {b.shape}, so it is closer to the viewer"
        )
    if scene.figure is not None:
        f = scene.figure
        sents.append(
            f"A person {_POSE_PHRASES[f.pose]} is drawn in black lines {position_phrase(f.position)}"
        )
    if scene.text is not None:
        sents.append(
            f'The word "{scene.text.word}" is written in black capital letters across the '
            f"{scene.text.position} of the picture"
        )
    colours = sorted({o.colour for o in scene.objects})
    if len(colours) > 1:
        sents.append(f"The colours in the picture are {_join(colours)}")
    return " ".join(_sentence(s) for s in sents)


# ---------------------------------------------------------------- narrative
def narrative(scene: Scene, rng: np.random.Generator) -> dict[str, Any]:
    """A Localized-Narratives-style record body: caption, timed words and mouse traces.

    Returns:
        ``{"caption", "timed_caption", "traces"}`` in the Localized Narratives JSONL field
        layout (trace points are ``{"x", "y", "t"}`` with x, y normalised to [0, 1]).
    """
    size = scene.image_size
    sentences: list[tuple[str, tuple[float, float]]] = []
    order = reading_order(scene)
    openers = ["In this image we can see", "In this picture I can see", "Here we can see"]
    for rank, k in enumerate(order):
        obj = scene.objects[k]
        where = position_phrase(obj.position)
        if rank == 0:
            s = f"{openers[int(rng.integers(3))]} {object_phrase(obj)} {where}"
        else:
            s = ["Beside it there is", "We can also see", "There is also"][int(rng.integers(3))]
            s = f"{s} {object_phrase(obj)} {where}"
        sentences.append((s, obj.center))
    if scene.figure is not None:
        kp = np.asarray(scene.figure.keypoints)
        sentences.append(
            (
                f"{position_phrase(scene.figure.position)} there is {figure_phrase(scene.figure)}",
                tuple(kp.mean(0)),
            )
        )
    if scene.text is not None:
        x, y, w, h = scene.text.box
        sentences.append(
            (
                f'At the {scene.text.position} we can see the text "{scene.text.word}"',
                (x + w / 2, y + h / 2),
            )
        )
    sentences.append(("In the background there is a grey wall", (size / 2, size / 2)))

    timed, traces, t = [], [], 0.0
    for text, (cx, cy) in sentences:
        words = _sentence(text).split()
        start = t
        for i in range(0, len(words), 2):
            chunk = " ".join(words[i : i + 2])
            dur = 0.25 * len(chunk.split()) + float(rng.uniform(0.05, 0.2))
            timed.append(
                {"utterance": chunk, "start_time": round(t, 3), "end_time": round(t + dur, 3)}
            )
            t += dur
        # a small loop around the element while it is being described
        steps = max(4, int((t - start) / 0.05))
        angle = np.linspace(0, 2 * np.pi, steps) + float(rng.uniform(0, 2 * np.pi))
        radius = 0.06 + float(rng.uniform(0, 0.03))
        trace = [
            {
                "x": round(float(cx / size + radius * np.cos(a)), 4),
                "y": round(float(cy / size + radius * np.sin(a)), 4),
                "t": round(float(start + (t - start) * i / (steps - 1)), 3),
            }
            for i, a in enumerate(angle)
        ]
        traces.append(trace)
        t += 0.3
    caption = " ".join(_sentence(s) for s, _ in sentences)
    return {"caption": caption, "timed_caption": timed, "traces": traces}


# ---------------------------------------------------------------- parsing
_SIZE_WORDS = {
    "small": "small",
    "little": "small",
    "tiny": "small",
    "large": "large",
    "big": "large",
}
_POS_ALTS = "|".join(
    sorted((re.escape(v) for v in _POSITION_PHRASES.values()), key=len, reverse=True)
)
_OBJ_RE = re.compile(
    rf"\b(?:(?P<size>{'|'.join(_SIZE_WORDS)})\s+)?(?P<colour>{'|'.join(COLOURS)})\s+"
    rf"(?P<shape>{'|'.join(list(PLURALS.values()) + list(SHAPES))})\b(?:\s+(?P<pos>{_POS_ALTS}))?",
    re.IGNORECASE,
)
_POS_BY_PHRASE = {v: k for k, v in _POSITION_PHRASES.items()}
_SINGULAR = {v: k for k, v in PLURALS.items()}


def parse_caption(text: str) -> list[ObjectSpec]:
    """Objects mentioned in ``text`` as ``[size] colour shape [position phrase]``.

    Reads :func:`canonical_caption` exactly, and the colour/shape (and size/position when
    present) of most other phrasings.  Mentions of the same object twice are not merged.
    """
    specs = []
    for m in _OBJ_RE.finditer(text):
        shape = m.group("shape").lower()
        shape = _SINGULAR.get(shape, shape)
        size = _SIZE_WORDS.get((m.group("size") or "").lower())
        pos = m.group("pos")
        specs.append(
            ObjectSpec(
                colour=m.group("colour").lower(),
                shape=shape,
                size=size if size in SIZES else None,
                position=_POS_BY_PHRASE.get(pos.lower()) if pos else None,
            )
        )
    return specs


assert set(_POSITION_PHRASES) == set(CELL_NAMES.values())
