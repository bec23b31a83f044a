"""Conformance suite for SFT task plugins (langchain "standard tests" style).

A task plugin author subclasses :class:`TaskConformance` in their own test file,
names the registered task and (unless the task has an ``example(rng)`` method)
supplies one valid record; pytest collects every inherited check::

    import pytest
    from cm3leon.tasks.testing import TaskConformance

    class TestMyTask(TaskConformance):
        name = "my_task"

        @pytest.fixture
        def record(self):
            return {"id": "1", "image": my_image, "caption": "a cat"}

The checks: the factory builds a :class:`cm3leon.core.interfaces.Task` named like its
spec; templates are non-empty strings whose ``<break>`` segments are non-empty;
rendering gives a non-empty :class:`~cm3leon.core.documents.Document` without empty
text segments; the same seed renders the same document; the spec's declared
``inputs``/``outputs`` modalities are exactly those of the rendered segments; the
document round-trips through :class:`cm3leon.core.serialize.DocumentTokenizer`
(byte-level text, a small deterministic probe image tokenizer) with ``<break>`` exactly
where Figure 8 puts it; the document marks its output in ``meta["targets"]``
(:attr:`cm3leon.core.documents.Document.targets`, segments of the declared ``outputs``
modalities), whose token ranges hold exactly the output (the image's codes; the field's
text, with the space before it) and can be masked by the CM3 objective's task-aware
option and restored; every target is record content (a text target begins and ends
with text of the record, an image target shows one of the record's images), so the
declared output placeholder is the rendered target; a malformed record raises
``ValueError`` (what ``cm3leon data prepare --skip-bad`` counts), and so does a record
missing any field the rendering uses (a field is never filled with a default such as
``"0"``, unless the ``optional_fields`` fixture lists it); and a reader, if declared,
accepts the reader contract's keywords and is run on the ``reader_input`` fixture (a
small file in its format), its records rendered by the task -- a declared reader that no
test runs fails the suite.  The repository runs the suite over every registered task
(``tests/tasks/test_conformance.py``).

Fixtures a subclass may override: ``record`` (one valid record; default ``task.example``),
``reader_input`` (``(path, reader keywords)``; required when the spec declares a reader),
``optional_fields`` (record keys whose absence the task documents and fills itself;
default the task's ``optional_fields`` attribute, else none) and ``registries``.

Requires pytest (``pip install cm3leon-tasks[testing]``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.interfaces import Task
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.registry import TaskSpec, resolve_object

__all__ = [
    "MODALITIES",
    "ProbeImageTokenizer",
    "TaskConformance",
    "probe_tokenizer",
    "record_images",
    "record_texts",
    "segment_layout",
]

MODALITIES = ("text", "image")


class ProbeImageTokenizer:
    """A tiny deterministic image tokenizer for layout tests (not a VQ model).

    Each image is box-filtered to ``side x side`` pixels and every pixel becomes one code
    from its colour quantised to 4 levels per channel (codebook of 64).  Different images
    almost always get different codes, which is all a layout test needs.
    """

    codebook_size = 64

    def __init__(self, side: int = 2) -> None:
        self.side = side

    @property
    def num_tokens(self) -> int:
        return self.side * self.side

    @property
    def image_size(self) -> int:
        return self.side

    def encode(self, images: Sequence[Any]) -> np.ndarray:
        """Codes ``(B, side * side)`` int64."""
        from PIL import Image

        rows = []
        for image in images:
            pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
            small = np.asarray(pil.convert("RGB").resize((self.side, self.side), Image.BOX), np.int64)
            q = small // 64  # (side, side, 3) in [0, 4)
            rows.append((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel())
        return np.stack(rows)

    def decode(self, codes: Any) -> list[Any]:
        """Codes -> flat-colour RGB images (the quantised colours)."""
        from PIL import Image

        out = []
        for row in np.asarray(codes, np.int64).reshape(-1, self.num_tokens):
            rgb = np.stack([row // 16, (row // 4) % 4, row % 4], axis=-1) * 64 + 32
            out.append(Image.fromarray(rgb.reshape(self.side, self.side, 3).astype(np.uint8)))
        return out

    def save(self, directory: str | Path) -> Path:
        from cm3leon.core.io import atomic_write_json

        return atomic_write_json(Path(directory) / "probe_tokenizer.json", {"side": self.side})


def probe_tokenizer(num_sentinels: int = 2) -> Any:
    """A :class:`DocumentTokenizer` with byte-level text and :class:`ProbeImageTokenizer` images."""
    from cm3leon.core.tokenization import ByteTokenizer, build_document_tokenizer

    return build_document_tokenizer(ByteTokenizer(), ProbeImageTokenizer(), num_sentinels=num_sentinels)


def segment_layout(doc: Document) -> list[str]:
    """``["text", "image", ...]`` of a document's segments."""
    return [s.modality for s in doc.segments]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def record_texts(record: Any) -> set[str]:
    """Every text of a record, whitespace-normalised and case-folded: string and number
    values, and those inside lists and mappings (``choices``, ``objects[i]["label"]``)."""
    if isinstance(record, str):
        return {_norm(record)} if record.strip() else set()
    if isinstance(record, (int, float)) and not isinstance(record, bool):
        return {_norm(str(record))}
    if isinstance(record, dict):
        return set().union(*(record_texts(v) for v in record.values()))
    if isinstance(record, (list, tuple)):
        return set().union(*(record_texts(v) for v in record))
    return set()


def record_images(record: Any) -> Iterator[np.ndarray]:
    """The RGB ``(H, W, 3)`` uint8 arrays of a record's images (PIL images or uint8 arrays),
    at the top level and inside lists."""
    from PIL import Image

    values = record.values() if isinstance(record, dict) else record
    for value in values:
        if isinstance(value, Image.Image):
            yield np.asarray(value.convert("RGB"))
        elif isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim in (2, 3):
            yield np.asarray(Image.fromarray(value).convert("RGB"))
        elif isinstance(value, (list, tuple)):
            yield from record_images(value)


def _same_picture(target: np.ndarray, source: np.ndarray, tolerance: float = 8.0) -> bool:
    """``target`` shows ``source`` (resized to its size if needed): mean |difference| <= tolerance."""
    from PIL import Image

    if source.shape != target.shape:
        source = np.asarray(Image.fromarray(source).resize(target.shape[1::-1], Image.BILINEAR))
    return float(np.abs(source.astype(np.float64) - target.astype(np.float64)).mean()) <= tolerance


class TaskConformance:
    """Checks every SFT task must pass; subclass and set :attr:`name`.

    Attributes:
        name: the registered task name.
        task_options: keyword options for the task factory.
        seeds: seeds used by the determinism and modality checks (template coverage draws at
            least 20 per template).
    """

    name: ClassVar[str]
    task_options: ClassVar[dict[str, Any]] = {}
    seeds: ClassVar[tuple[int, ...]] = tuple(range(24))

    # ------------------------------------------------------------- fixtures
    @pytest.fixture
    def task_name(self) -> str:
        return self.name

    @pytest.fixture
    def registries(self) -> Any:
        """The registries to look the task up in (override to test an uninstalled plugin)."""
        return get_registries()

    @pytest.fixture
    def spec(self, registries: Any, task_name: str) -> TaskSpec:
        return registries.tasks.get(task_name)

    @pytest.fixture
    def task(self, spec: TaskSpec) -> Any:
        return spec.build(**self.task_options)

    @pytest.fixture
    def record(self, task: Any) -> dict[str, Any]:
        """One valid record; override in a subclass when the task has no ``example(rng)``."""
        if not callable(getattr(task, "example", None)):
            pytest.skip(f"task {task.name!r} has no example(rng); its own test must supply `record`")
        return task.example(np.random.default_rng(0))

    @pytest.fixture
    def reader_input(self) -> tuple[str | Path, dict[str, Any]] | None:
        """``(path, keywords)`` of a small dataset in the reader's format, e.g.
        ``(tmp_path / "data", {"split": "train"})``; override when the spec declares a reader."""
        return None

    @pytest.fixture
    def optional_fields(self, task: Any) -> tuple[str, ...]:
        """Record keys the task may lack and documents a fallback for (ScienceQA's ``context``
        renders as ``N/A``); default: the task's ``optional_fields`` attribute, else none."""
        return tuple(getattr(task, "optional_fields", ()))

    # ---------------------------------------------------------------- checks
    def test_is_task(self, task: Any, spec: TaskSpec) -> None:
        assert isinstance(task, Task), f"{spec.name}: factory returned {type(task).__name__}, not a Task"
        assert task.name == spec.name, f"task.name {task.name!r} != registered name {spec.name!r}"

    def test_templates_non_empty(self, task: Any) -> None:
        templates = list(task.templates)
        assert templates, f"{task.name}: no templates"
        for t in templates:
            assert isinstance(t, str) and t.strip(), f"{task.name}: empty template {t!r}"
            parts = t.split("<break>")
            assert all(p.strip() for p in parts), f"{task.name}: template {t!r} has an empty segment"

    def test_declared_modalities(self, spec: TaskSpec) -> None:
        for side in ("inputs", "outputs"):
            values = getattr(spec, side)
            assert values and set(values) <= set(MODALITIES), f"{spec.name}.{side} = {values!r}"

    def test_renders_document(self, task: Any, record: dict[str, Any]) -> None:
        doc = task.render(record, rng=np.random.default_rng(0))
        assert isinstance(doc, Document), f"{task.name}: render returned {type(doc).__name__}"
        assert doc.segments and not doc.is_empty(), f"{task.name}: rendered an empty document"
        for i, seg in enumerate(doc.segments):
            if isinstance(seg, TextSegment):
                assert seg.text.strip(), f"{task.name}: segment {i} is empty text"
            else:
                assert isinstance(seg, ImageSegment) and seg.pil().size[0] > 0

    def test_modalities_match_rendering(self, task: Any, spec: TaskSpec, record: dict[str, Any]) -> None:
        for seed in self.seeds[:8]:
            doc = task.render(record, rng=np.random.default_rng(seed))
            declared = set(spec.inputs) | set(spec.outputs)
            assert set(segment_layout(doc)) == declared, (
                f"{task.name}: rendered modalities {segment_layout(doc)} but the spec declares "
                f"inputs={spec.inputs} outputs={spec.outputs}"
            )

    def test_deterministic_with_seed(self, task: Any, record: dict[str, Any]) -> None:
        for seed in self.seeds[:4]:
            a = task.render(record, rng=np.random.default_rng(seed))
            b = task.render(record, rng=np.random.default_rng(seed))
            assert a == b, f"{task.name}: two renderings with seed {seed} differ"

    def test_every_template_is_used(self, task: Any, record: dict[str, Any]) -> None:
        draws = max(len(self.seeds), 20 * len(task.templates))  # coupon collector, with margin
        used = {task.render(record, rng=np.random.default_rng(s)).meta.get("template") for s in range(draws)}
        if None in used:
            pytest.skip(f"{task.name} does not record meta['template']")
        assert used == set(range(len(task.templates))), f"{task.name}: templates used {sorted(used)}"

    def test_tokenization_round_trip(self, task: Any, record: dict[str, Any]) -> None:
        tok = probe_tokenizer()
        doc = task.render(record, rng=np.random.default_rng(0))
        ids = tok.encode(doc)
        back = tok.decode(ids)
        assert segment_layout(back) == segment_layout(doc), f"{task.name}: layout changed in round trip"
        probe = tok.image_tokenizer
        for seg, got in zip(doc.segments, back.segments, strict=True):
            if isinstance(seg, TextSegment):
                assert got.text == seg.text, f"{task.name}: text {seg.text!r} came back as {got.text!r}"
            else:
                assert list(got.codes) == probe.encode([seg.pil()])[0].tolist()
        # Figure 8: every image is bracketed by <break>; no two <break> in a row.
        v = tok.vocab
        breaks = ids == v.break_id
        assert not (breaks[1:] & breaks[:-1]).any(), f"{task.name}: two <break> in a row"
        is_image = ids >= v.image_offset
        assert not is_image[0] and not is_image[-1], f"{task.name}: an image run is not bracketed"
        starts = np.flatnonzero(is_image[1:] & ~is_image[:-1]) + 1  # first code of each image
        ends = np.flatnonzero(is_image[:-1] & ~is_image[1:])  # last code of each image
        assert all(ids[s - 1] == v.break_id for s in starts), f"{task.name}: image without opening <break>"
        assert all(ids[e + 1] == v.break_id for e in ends), f"{task.name}: image without closing <break>"
        assert len(starts) == len(doc.images), f"{task.name}: {len(starts)} image runs for {len(doc.images)} images"

    def test_declares_targets(self, task: Any, spec: TaskSpec, record: dict[str, Any]) -> None:
        covered: set[str] = set()
        for seed in self.seeds[:8]:
            doc = task.render(record, rng=np.random.default_rng(seed))
            targets = doc.targets  # raises on malformed meta["targets"]
            assert targets, f"{task.name}: the rendered document marks no output in meta['targets']"
            kinds = {doc.segments[t.segment].modality for t in targets}
            assert kinds <= set(spec.outputs), (
                f"{task.name}: targets on {sorted(kinds)} segments but the spec declares outputs={spec.outputs}"
            )
            covered |= kinds
        assert covered == set(spec.outputs), f"{task.name}: outputs {spec.outputs}, targets only on {sorted(covered)}"

    def test_target_tokens_are_the_output(self, task: Any, record: dict[str, Any]) -> None:
        from cm3leon.core.objective import CM3Config, cm3_inverse, cm3_transform
        from cm3leon.core.serialize import split_at_target

        tok = probe_tokenizer()
        v = tok.vocab
        for seed in self.seeds[:4]:
            doc = task.render(record, rng=np.random.default_rng(seed))
            example = tok.encode_example_with_targets(doc)
            ids, spans = example.ids, example.targets
            assert len(spans) == len(doc.targets), f"{task.name}: {len(doc.targets)} targets, {len(spans)} token ranges"
            for t, (start, end) in zip(doc.targets, spans.tolist(), strict=True):
                seg, piece = doc.segments[t.segment], ids[start:end]
                assert not (piece == v.break_id).any(), f"{task.name}: target {t} crosses <break>"
                if isinstance(seg, TextSegment):
                    expected = split_at_target(seg.text, *t.char_range(seg))[1]  # type: ignore[misc]
                    got = tok.text_tokenizer.decode((piece - v.text_offset).tolist())
                    assert got == expected, f"{task.name}: target tokens decode to {got!r}, not {expected!r}"
                else:
                    codes = tok.image_tokenizer.encode([seg.pil()])[0]
                    assert (piece - v.image_offset).tolist() == codes.tolist(), f"{task.name}: target is not the image"
            masked = cm3_transform(ids, v, CM3Config(target_prob=1.0), np.random.default_rng(seed), targets=spans)
            assert np.array_equal(cm3_inverse(masked.tokens, v), ids), f"{task.name}: task-aware mask not invertible"

    def test_malformed_record_raises_value_error(self, task: Any) -> None:
        with pytest.raises(ValueError) as info:
            task.render({"id": "broken"}, rng=np.random.default_rng(0))
        assert str(info.value).strip(), f"{task.name}: error without a message"

    def test_reader_contract(self, spec: TaskSpec) -> None:
        if spec.reader is None:
            pytest.skip(f"{spec.name} declares no reader")
        reader = resolve_object(spec.reader)
        assert callable(reader), f"{spec.name}: reader {spec.reader!r} is not callable"
        params = inspect.signature(reader).parameters
        has_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for keyword in ("split", "skip_bad", "stats"):
            assert keyword in params or has_kwargs, f"{spec.name}: reader does not accept {keyword}="

    def test_missing_field_is_an_error_not_a_default(
        self, task: Any, record: dict[str, Any], optional_fields: tuple[str, ...]
    ) -> None:
        """A record without a field the rendering uses raises ``ValueError``; it is never
        rendered with a made-up value (``record.get("answer", 0)`` training on ``"0"``)."""
        for key in record:
            if key == "id" or key in optional_fields:
                continue
            partial = {k: v for k, v in record.items() if k != key}
            for seed in self.seeds[:4]:
                full = task.render(record, rng=np.random.default_rng(seed))
                try:
                    doc = task.render(partial, rng=np.random.default_rng(seed))
                except ValueError:
                    break  # the field is required: right
                # Rendering without the field is fine only if the field is not rendered at all.
                assert doc.segments == full.segments, (
                    f"{task.name}: a record without {key!r} renders (seed {seed}: "
                    f"{[getattr(s, 'text', '[image]') for s in doc.segments]}) instead of raising "
                    f"ValueError; a missing field must not get a default value (if the task documents "
                    f"a fallback for it, list it in the `optional_fields` fixture)"
                )

    def test_targets_are_record_content(self, task: Any, spec: TaskSpec, record: dict[str, Any]) -> None:
        """The declared output is what the target holds: a text target begins and ends with
        text of the record, an image target shows one of the record's images (not, say, the
        grey condition image derived from it, nor template words next to the answer)."""
        texts = record_texts(record)
        images = list(record_images(record))
        for seed in self.seeds[:8]:
            doc = task.render(record, rng=np.random.default_rng(seed))
            for t in doc.targets:
                seg = doc.segments[t.segment]
                if isinstance(seg, TextSegment):
                    start, end = t.char_range(seg)  # type: ignore[misc]
                    held = _norm(seg.text[start:end])
                    assert any(held.startswith(x) for x in texts) and any(held.endswith(x) for x in texts), (
                        f"{task.name}: target {t.to_json()} holds {seg.text[start:end]!r}, which does not begin "
                        f"and end with text of the record: the declared output does not match the rendered "
                        f"target (seed {seed})"
                    )
                else:
                    picture = np.asarray(seg.pil().convert("RGB"))
                    assert any(_same_picture(picture, image) for image in images), (
                        f"{task.name}: target {t.to_json()} is an image that is none of the record's images: "
                        f"the declared output does not match the rendered target (seed {seed})"
                    )

    def test_reader_runs(
        self, task: Any, spec: TaskSpec, reader_input: tuple[str | Path, dict[str, Any]] | None
    ) -> None:
        """A declared reader is run: it reads ``reader_input``, counts its records in
        ``stats["records"]``, and the task renders what it yields."""
        if spec.reader is None:
            pytest.skip(f"{spec.name} declares no reader")
        assert reader_input is not None, (
            f"{spec.name} declares the reader {spec.reader!r}, which no test runs: give the test a "
            "`reader_input` fixture returning (path, reader keywords) of a small dataset in its format"
        )
        path, options = reader_input
        stats: dict[str, int] = {}
        records = list(spec.resolve("reader")(path, stats=stats, **options))
        assert records, f"{spec.name}: the reader yielded no record from {path} ({stats})"
        assert stats.get("records") == len(records), f"{spec.name}: stats {stats} for {len(records)} records"
        for i, rec in enumerate(records[:8]):
            doc = task.render(rec, rng=np.random.default_rng(i))
            assert isinstance(doc, Document) and doc.targets, f"{spec.name}: record {i} of the reader renders no target"
