"""Template parsing and rendering (Table 5 notation)."""

from __future__ import annotations

import numpy as np
import pytest

from cm3leon.core.documents import ImageSegment, TextSegment
from cm3leon.tasks.records import RecordError
from cm3leon.tasks.template import TemplateSet, parse_template
from tests.tasks._helpers import solid


def test_parse_splits_at_break_and_finds_image_slots() -> None:
    parts = parse_template(
        "Make high quality image <break> {edge image} <break> {caption} <break> {image}", ("edge image", "image")
    )
    assert [(p.kind, p.value) for p in parts] == [
        ("text", "Make high quality image"), ("image", "edge image"), ("text", "{caption}"), ("image", "image")]
    assert parts[2].fields == ("caption",)


@pytest.mark.parametrize("bad", ["", "a <break> <break> {image}", "draw {image} here <break> x"])
def test_parse_rejects_empty_segments_and_inline_images(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_template(bad, ("image",))


def test_render_fills_fields_newlines_and_keeps_order() -> None:
    ts = TemplateSet("t", ("Question: {question} [newline] {answer} <break> {image}",))
    image = solid((1, 2, 3))
    doc = ts.render(record_id="r1", values={"question": "Why?", "answer": "because"}, images={"image": image},
                    rng=np.random.default_rng(0), meta={"answer": "because"})
    assert doc.segments[0] == TextSegment("Question: Why?\nbecause")
    assert isinstance(doc.segments[1], ImageSegment) and doc.segments[1].pil().size == image.size
    assert doc.id == "t/r1" and doc.meta == {"task": "t", "template": 0, "record": "r1", "answer": "because"}


def test_missing_field_or_image_names_the_record() -> None:
    ts = TemplateSet("t", ("{caption} <break> {image}",))
    with pytest.raises(RecordError, match=r"record 'r9'.*\{caption\}"):
        ts.render(record_id="r9", values={}, images={"image": solid((0, 0, 0))}, rng=np.random.default_rng(0))
    with pytest.raises(RecordError, match=r"record 'r9'.*\{image\}"):
        ts.render(record_id="r9", values={"caption": "x"}, images={}, rng=np.random.default_rng(0))


def test_unavailable_field_excludes_templates_using_it() -> None:
    ts = TemplateSet("t", ("A {x} <break> {image}", "B {x} {why} <break> {image}"))
    image = solid((0, 0, 0))
    seen = {ts.render(record_id="r", values={"x": "1", "why": None}, images={"image": image},
                      rng=np.random.default_rng(s)).meta["template"] for s in range(20)}  # fmt: skip
    assert seen == {0}
    seen = {ts.render(record_id="r", values={"x": "1", "why": "w"}, images={"image": image},
                      rng=np.random.default_rng(s)).meta["template"] for s in range(20)}  # fmt: skip
    assert seen == {0, 1}


def test_choice_is_uniform_and_seeded() -> None:
    ts = TemplateSet("t", ("a <break> {image}", "b <break> {image}", "c <break> {image}"))
    image = solid((0, 0, 0))
    picks = [ts.render(record_id="r", values={}, images={"image": image}, rng=np.random.default_rng(s)).meta["template"]
             for s in range(600)]  # fmt: skip
    counts = np.bincount(picks, minlength=3)
    assert (abs(counts - 200) < 4 * np.sqrt(600 * (1 / 3) * (2 / 3))).all(), counts
    with pytest.raises(TypeError, match="Generator"):
        ts.render(record_id="r", values={}, images={"image": image}, rng=0)  # type: ignore[arg-type]


def test_targets_are_the_exact_output_field_or_slot() -> None:
    ts = TemplateSet("t", ("Question: {question} The answer is {answer}. <break> {image}",
                           "Question: {question} [newline] {answer} <break> {image}"), outputs=("answer",))  # fmt: skip
    values = {"question": "What is {answer}? Answer:", "answer": "blue"}  # braces in a value stay text
    for seed in range(8):
        doc = ts.render(record_id="r", values=values, images={"image": solid((1, 2, 3))},
                        rng=np.random.default_rng(seed))  # fmt: skip
        (target,) = doc.targets
        text = doc.segments[0].text
        assert target.segment == 0 and text[target.start : target.end] == "blue"
        assert text.endswith(("is blue.", "\nblue"))
    edit = TemplateSet("e", ("Edit <break> {image1} <break> {instruction} <break> {image2}",),
                       ("image1", "image2"), outputs=("image2",))  # fmt: skip
    images = {"image1": solid((0, 0, 0)), "image2": solid((9, 9, 9))}
    doc = edit.render(record_id="r", values={"instruction": "make it red"}, images=images, rng=np.random.default_rng(0))
    assert [t.to_json() for t in doc.targets] == [{"segment": 3}]


def test_several_output_fields_of_a_segment_make_one_target() -> None:
    ts = TemplateSet("s", ("Answer: Let's think: {explanation} So the answer is {answer}. <break> {image}",),
                     outputs=("explanation", "answer"))  # fmt: skip
    doc = ts.render(record_id="r", values={"explanation": "It is round.", "answer": "circle"},
                    images={"image": solid((0, 0, 0))}, rng=np.random.default_rng(0))  # fmt: skip
    (t,) = doc.targets
    assert doc.segments[0].text[t.start : t.end] == "It is round. So the answer is circle"


def test_output_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="uses none of the outputs"):
        TemplateSet("t", ("{caption} <break> {image}", "draw <break> {image}"), outputs=("caption",))
    ts = TemplateSet("t", ("{caption} <break> {image}",), outputs=("caption",))
    with pytest.raises(RecordError, match=r"output field \{caption\} is empty"):
        ts.render(record_id="r", values={"caption": ""}, images={"image": solid((0, 0, 0))},
                  rng=np.random.default_rng(0))  # fmt: skip
    plain = TemplateSet("t", ("{caption} <break> {image}",))  # no outputs declared: no targets recorded
    doc = plain.render(record_id="r", values={"caption": "x"}, images={"image": solid((0, 0, 0))},
                       rng=np.random.default_rng(0))  # fmt: skip
    assert "targets" not in doc.meta and doc.targets == ()
