"""The task conformance suite catches deliberately broken toy tasks that it used to pass.

Each broken toy passes the checks the suite had before (called here to show it), and the
new check fails on it naming the problem; a correct toy passes the whole suite
(:class:`TestGoodToy`), so the new checks can pass too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from cm3leon.core.documents import Document, TextSegment
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.plugin_manager import registries_with
from cm3leon.core.registry import TaskSpec
from cm3leon.tasks.records import record_id, require_image, require_str
from cm3leon.tasks.template import TemplateSet
from cm3leon.tasks.testing import TaskConformance

RED = (220, 30, 30)


def read_toy(path: str | Path, *, split: str | None = None, skip_bad: bool = False,
             stats: dict | None = None) -> Any:  # fmt: skip
    """``toy.jsonl`` lines ``{"image": FILE, "caption": TEXT}`` -> caption records."""
    file = Path(path) / "toy.jsonl"
    for n, line in enumerate(file.read_text().splitlines()):
        entry = json.loads(line)
        if stats is not None:
            stats["records"] = stats.get("records", 0) + 1
        yield {"id": str(n), "image": Image.open(file.parent / entry["image"]).convert("RGB"),
               "caption": entry["caption"]}  # fmt: skip


def read_toy_wrong_key(path: str | Path, **kwargs: Any) -> Any:
    """A broken reader: its records say ``text`` where the task reads ``caption``."""
    for record in read_toy(path, **kwargs):
        yield {"id": record["id"], "image": record["image"], "text": record["caption"]}


@dataclass(frozen=True)
class ToyTask:
    """``{caption} <break> {image}``: caption -> image (the correct toy)."""

    name: str = "toy_good"
    templates: tuple[str, ...] = ("{caption} <break> {image}", "Draw: {caption} <break> {image}")
    _set: TemplateSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_set", TemplateSet(self.name, self.templates, ("image",), outputs=("image",)))

    def caption(self, record: dict[str, Any]) -> str:
        return require_str(record, "caption", task=self.name)

    def render(self, record: dict[str, Any], *, rng: np.random.Generator) -> Document:
        rid = record_id(record, task=self.name)
        image = require_image(record, "image", task=self.name)
        return self._set.render(record_id=rid, values={"caption": self.caption(record)}, images={"image": image}, rng=rng)

    def example(self, rng: np.random.Generator) -> dict[str, Any]:
        del rng
        return {"id": "t1", "image": Image.new("RGB", (8, 8), RED), "caption": "a red square"}


@dataclass(frozen=True)
class DefaultingTask(ToyTask):
    """Broken: a missing caption renders as ``"0"`` instead of raising."""

    name: str = "toy_defaulting"

    def caption(self, record: dict[str, Any]) -> str:
        return str(record.get("caption", 0))


@dataclass(frozen=True)
class GreyOutputTask(ToyTask):
    """Broken: declares the grey condition image as its output instead of the colour image."""

    name: str = "toy_grey_output"
    templates: tuple[str, ...] = ("Colorize <break> {grey image} <break> {caption} <break> {image}",)

    def __post_init__(self) -> None:
        slots = ("grey image", "image")
        object.__setattr__(self, "_set", TemplateSet(self.name, self.templates, slots, outputs=("grey image",)))

    def render(self, record: dict[str, Any], *, rng: np.random.Generator) -> Document:
        rid = record_id(record, task=self.name)
        image = require_image(record, "image", task=self.name)
        grey = ImageOps.grayscale(image).convert("RGB")
        return self._set.render(record_id=rid, values={"caption": self.caption(record)},
                                images={"grey image": grey, "image": image}, rng=rng)  # fmt: skip


@dataclass(frozen=True)
class ShiftedTargetTask(ToyTask):
    """Broken: prefixes the rendered text after TemplateSet marked the output, so the
    recorded target range no longer holds the answer."""

    name: str = "toy_shifted"
    templates: tuple[str, ...] = ("Question: {question} Answer: {answer}. <break> {image}",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_set", TemplateSet(self.name, self.templates, ("image",), outputs=("answer",)))

    def render(self, record: dict[str, Any], *, rng: np.random.Generator) -> Document:
        rid = record_id(record, task=self.name)
        image = require_image(record, "image", task=self.name)
        values = {k: require_str(record, k, task=self.name) for k in ("question", "answer")}
        doc = self._set.render(record_id=rid, values=values, images={"image": image}, rng=rng)
        first = doc.segments[0]
        return doc.replace(segments=(TextSegment(f"VQA. {first.text}"), *doc.segments[1:]))

    def example(self, rng: np.random.Generator) -> dict[str, Any]:
        del rng
        return {"id": "q1", "image": Image.new("RGB", (8, 8), RED), "question": "What colour is it?", "answer": "red"}


class ToyPlugin:
    @hookimpl
    def cm3leon_register_tasks(self) -> list[TaskSpec]:
        here = read_toy
        return [
            TaskSpec("toy_good", ToyTask, "correct", inputs=("text",), outputs=("image",), reader=here),
            TaskSpec("toy_defaulting", DefaultingTask, "defaults", inputs=("text",), outputs=("image",)),
            TaskSpec("toy_grey_output", GreyOutputTask, "wrong output", inputs=("image", "text"), outputs=("image",)),
            TaskSpec("toy_shifted", ShiftedTargetTask, "shifted", inputs=("image", "text"), outputs=("text",)),
            TaskSpec("toy_wrong_reader", lambda: ToyTask("toy_wrong_reader"), "bad reader", inputs=("text",), outputs=("image",),
                     reader=read_toy_wrong_key),
        ]  # fmt: skip


@pytest.fixture(scope="module")
def registries() -> Any:
    return registries_with(ToyPlugin())


@pytest.fixture
def toy_data(tmp_path: Path) -> Path:
    Image.new("RGB", (8, 8), RED).save(tmp_path / "a.png")
    (tmp_path / "toy.jsonl").write_text(json.dumps({"image": "a.png", "caption": "a red square"}) + "\n")
    return tmp_path


def _suite(registries: Any, name: str) -> tuple[TaskConformance, Any, TaskSpec, dict[str, Any]]:
    spec = registries.tasks.get(name)
    task = spec.build()
    return TaskConformance(), task, spec, task.example(np.random.default_rng(0))


def _old_checks_pass(suite: TaskConformance, task: Any, spec: TaskSpec, record: dict[str, Any]) -> None:
    """The checks the suite had before: the broken toys pass every one of them."""
    suite.test_is_task(task, spec)
    suite.test_renders_document(task, record)
    suite.test_modalities_match_rendering(task, spec, record)
    suite.test_declares_targets(task, spec, record)
    suite.test_target_tokens_are_the_output(task, record)
    suite.test_malformed_record_raises_value_error(task)
    if spec.reader is not None:
        suite.test_reader_contract(spec)


class TestGoodToy(TaskConformance):
    """Control: the correct toy passes the whole suite, reader included."""

    name = "toy_good"

    @pytest.fixture
    def registries(self) -> Any:
        return registries_with(ToyPlugin())

    @pytest.fixture
    def reader_input(self, toy_data: Path) -> tuple[Path, dict[str, Any]]:
        return toy_data, {}


def test_catches_a_missing_field_rendered_as_a_default(registries: Any) -> None:
    suite, task, spec, record = _suite(registries, "toy_defaulting")
    _old_checks_pass(suite, task, spec, record)
    rendered = task.render({"id": "x", "image": record["image"]}, rng=np.random.default_rng(0))
    assert rendered.segments[0].text in ("0", "Draw: 0")
    with pytest.raises(AssertionError, match=r"without 'caption' renders .*'(Draw: )?0'.* instead of raising ValueError"):
        suite.test_missing_field_is_an_error_not_a_default(task, record, ())
    # A task that documents the fallback lists the field as optional.
    suite.test_missing_field_is_an_error_not_a_default(task, record, ("caption",))


def test_catches_a_declared_output_that_is_not_the_rendered_target(registries: Any) -> None:
    suite, task, spec, record = _suite(registries, "toy_grey_output")
    _old_checks_pass(suite, task, spec, record)
    with pytest.raises(AssertionError, match="image that is none of the record's images"):
        suite.test_targets_are_record_content(task, spec, record)
    suite, task, spec, record = _suite(registries, "toy_shifted")
    _old_checks_pass(suite, task, spec, record)
    with pytest.raises(AssertionError, match=r"holds 'wer', which does not begin and end with text of the record"):
        suite.test_targets_are_record_content(task, spec, record)


def test_catches_a_reader_that_no_test_runs(registries: Any, toy_data: Path) -> None:
    suite, task, spec, record = _suite(registries, "toy_good")
    _old_checks_pass(suite, task, spec, record)
    with pytest.raises(AssertionError, match=r"declares the reader .*read_toy.*, which no test runs"):
        suite.test_reader_runs(task, spec, None)
    suite.test_reader_runs(task, spec, (toy_data, {}))
    # Once run, a reader whose records the task cannot render fails.
    suite, task, spec, record = _suite(registries, "toy_wrong_reader")
    _old_checks_pass(suite, task, spec, record)
    with pytest.raises(ValueError, match="has no 'caption'"):
        suite.test_reader_runs(task, spec, (toy_data, {}))
