"""Captions, paragraphs, narratives, questions and edits derived from ground truth."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from cm3leon.world import language
from cm3leon.world.edits import EDIT_KINDS, apply_edit
from cm3leon.world.geometry import colour_conflicts
from cm3leon.world.language import (
    ObjectSpec,
    canonical_caption,
    parse_caption,
    referring_expression,
)
from cm3leon.world.questions import ten_answers
from cm3leon.world.records import World
from cm3leon.world.render import occlusions
from cm3leon.world.scene import CELL_NAMES, COLOURS, SHAPES, WORDS

N = 300


@pytest.fixture(scope="module")
def examples():
    world = World(21)
    return [world.example(i) for i in range(N)]


def test_at_least_five_distinct_captions(examples) -> None:
    for ex in examples:
        assert len(ex.captions) >= 5
        assert len({c.lower() for c in ex.captions}) == len(ex.captions)
        assert ex.captions[0] == canonical_caption(ex.scene)
        for caption in ex.captions:  # every caption names every object's colour and shape
            for obj in ex.scene.objects:
                assert obj.colour in caption and obj.shape in caption.replace("crosses", "cross")


def test_canonical_caption_parses_back_to_the_ground_truth(examples) -> None:
    for ex in examples:
        parsed = parse_caption(ex.captions[0])
        assert sorted(parsed, key=repr) == sorted(
            (ObjectSpec.of(o) for o in ex.scene.objects), key=repr
        )
        if ex.scene.text is not None:
            assert f'"{ex.scene.text.word}"' in ex.captions[0]
        if ex.scene.figure is not None:
            assert "person" in ex.captions[0]


def test_parse_caption_reads_free_phrasings() -> None:
    specs = parse_caption("Two big blue triangles and a Red Circle in the top left corner!")
    assert specs == [
        ObjectSpec("blue", "triangle", "large", None),
        ObjectSpec("red", "circle", None, "top left"),
    ]
    assert parse_caption("a cat on a mat") == []


def test_paragraph_and_narrative(examples) -> None:
    for ex in examples[:100]:
        sentences = [s for s in re.split(r"(?<=\.)\s", ex.paragraph) if s]
        assert len(sentences) >= 2
        for obj in ex.scene.objects:
            assert obj.label in ex.paragraph
        assert bool(occlusions(ex.scene)) == ("closer to the viewer" in ex.paragraph)
        nar = ex.narrative
        words = " ".join(u["utterance"] for u in nar["timed_caption"])
        assert words == nar["caption"]
        times = [(u["start_time"], u["end_time"]) for u in nar["timed_caption"]]
        assert all(a < b for a, b in times) and all(
            b <= c for (_, b), (c, _) in zip(times, times[1:], strict=False)
        )
        assert len(nar["traces"]) >= len(ex.scene.objects) + 1
        for trace in nar["traces"]:
            assert all(set(p) == {"x", "y", "t"} for p in trace)
            assert all(b["t"] >= a["t"] for a, b in zip(trace, trace[1:], strict=False))


def test_referring_expressions_are_unambiguous(examples) -> None:
    for ex in examples:
        for k in range(len(ex.scene.objects)):
            ref = referring_expression(ex.scene, k)
            matches = [o for o in ex.scene.objects if _fits(ref, o)]
            assert matches == [ex.scene.objects[k]], ref


def _fits(ref: str, obj) -> bool:
    words = ref.split()
    if obj.shape not in words:
        return False
    if any(c in words for c in COLOURS) and obj.colour not in words:
        return False
    if any(s in words for s in ("small", "large")) and obj.size not in words:
        return False
    return (
        not ("corner" in ref or " the " in ref[4:]) or language.position_phrase(obj.position) in ref
    )


def test_ten_answers_keep_a_clear_majority() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        answers, conf = ten_answers("2", rng, ["1", "3"], p_variant=0.5, p_wrong=0.3)
        assert len(answers) == 10 and len(conf) == 10
        counts = Counter(answers)
        assert counts["2"] >= 6 and counts.most_common(1)[0][0] == "2"
        assert set(conf) <= {"yes", "maybe", "no"}


def test_vqa_answers_match_the_ground_truth(examples) -> None:
    types = Counter()
    for ex in examples:
        scene = ex.scene
        for q in ex.vqa:
            types[q.answer_type] += 1
            assert len(q.answers) == 10 and Counter(q.answers).most_common(1)[0][0] == q.answer
            assert q.answer_type in ("yes/no", "number", "other")
            if q.question == "How many shapes are there?":
                assert q.answer == str(len(scene.objects))
            if q.question == "Is there a person in the picture?":
                assert q.answer == ("yes" if scene.figure else "no")
            if q.question == "What word is written on the wall?":
                assert q.answer == scene.text.word.lower()
            m = re.fullmatch(r"What color is the (\w+)\?", q.question)
            if m:
                assert [o.colour for o in scene.objects if o.shape == m.group(1)] == [q.answer]
            m = re.fullmatch(r"Is there a (\w+) (\w+)\?", q.question)
            if m:
                present = any(
                    o.colour == m.group(1) and o.shape == m.group(2) for o in scene.objects
                )
                assert q.answer == ("yes" if present else "no")
        for q in ex.okvqa:
            assert len(q.answers) == 10 and q.question_type in (
                "three",
                "five",
                "six",
                "eight",
                "nine",
            )
        v = ex.vizwiz
        assert len(v.answers) == 10
        assert v.answerable == (v.answer_type != "unanswerable")
        if not v.answerable:
            assert scene.text is None and v.answer == "unanswerable"
    assert min(types.values()) > 20 and set(types) == {"yes/no", "number", "other"}


def test_scienceqa_problems(examples) -> None:
    kinds = Counter()
    for ex in examples:
        p = ex.scienceqa
        assert 2 <= len(p.choices) <= 4 and len(set(p.choices)) == len(p.choices)
        assert 0 <= p.answer < len(p.choices)
        assert p.hint and p.lecture and p.solution and p.subject and p.grade.startswith("grade")
        kinds[p.topic] += 1
        if p.question.startswith("What shape is the"):
            assert p.choices[p.answer] in SHAPES
        if p.question == "Which word is written in the picture?":
            assert p.choices[p.answer] == ex.scene.text.word.lower() and ex.scene.text.word in WORDS
    assert len(kinds) >= 4


def test_edits_change_exactly_what_the_instruction_says(examples) -> None:
    kinds = Counter()
    for ex in examples:
        e = ex.edit
        kinds[e.kind] += 1
        src, tgt = e.source.objects, e.target.objects
        assert colour_conflicts(tgt, e.target.image_size) == []
        assert e.target.figure == e.source.figure and e.target.text == e.source.text
        if e.kind == "recolour":
            assert (
                tgt[e.index].colour == e.colour != src[e.index].colour and e.colour in e.instruction
            )
            assert tgt[e.index].replace(colour=src[e.index].colour) == src[e.index]
            assert [o for i, o in enumerate(tgt) if i != e.index] == [
                o for i, o in enumerate(src) if i != e.index
            ]
        elif e.kind == "move":
            assert tgt[e.index].cell == e.cell != src[e.index].cell
            assert language.position_phrase(CELL_NAMES[e.cell]) in e.instruction
        elif e.kind == "add":
            assert len(tgt) == len(src) + 1 and tgt[:-1] == src and tgt[-1].label in e.instruction
        else:
            assert len(tgt) == len(src) - 1
        assert e.input_caption == canonical_caption(e.source) != e.output_caption
    assert set(kinds) == set(EDIT_KINDS)


def test_apply_edit_rejects_impossible_edits(examples) -> None:
    scene = examples[0].scene
    with pytest.raises(ValueError, match="out of range"):
        apply_edit(scene, "remove", 7)
    with pytest.raises(ValueError, match="new world colour"):
        apply_edit(scene, "recolour", 0, colour=scene.objects[0].colour)
    with pytest.raises(ValueError, match="free destination"):
        apply_edit(scene, "move", 0, cell=scene.objects[0].cell)
    with pytest.raises(ValueError, match="unknown edit kind"):
        apply_edit(scene, "explode", 0)
