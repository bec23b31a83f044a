"""The behavioural conformance suites of ``cm3leon.core.testing``, run over every registered
tokenizer, decoding piece, metric and source (built-in or installed).

A component the suites cannot build cheaply on CPU without a download is listed in
:data:`SKIPPED` with the reason, and shows up as a skip with that reason; nothing is
skipped silently (``test_skips_are_listed_for_registered_components``).  A third-party
metric or source installed here without inputs below fails, asking for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.testing import (
    DecodingConformance,
    MetricConformance,
    SourceConformance,
    TokenizerConformance,
)
from tests.core import _corpora

REGISTRIES = get_registries()

# (registry, name) -> why the suite does not run on it.
SKIPPED: dict[tuple[str, str], str] = {
    ("tokenizers", "chameleon_vqgan"): (
        "the Chameleon preset is a 512-px VQ-GAN of ~70M parameters: random init and one encode take "
        "tens of seconds on CPU, and its loader needs Meta's vqgan.ckpt (a download); the same "
        "VQGANTokenizer class runs the suite as `vqgan`, tests/tokenizers/test_chameleon.py covers the mapping"
    ),
}
# Checks that do not apply to a component, with the reason.
NOT_APPLICABLE: dict[tuple[str, str, str], str] = {
    ("sources", "world", "bad_input"): (
        "procedural source: it generates its documents and reads no records, so there is no bad record to name"
    ),
}


def _names(registry: str) -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.skip(reason=SKIPPED[(registry, name)]))
        if (registry, name) in SKIPPED else name
        for name in REGISTRIES[registry].names()
    ]  # fmt: skip


def test_skips_are_listed_for_registered_components() -> None:
    for (registry, name), reason in SKIPPED.items():
        assert name in REGISTRIES[registry], f"SKIPPED lists {registry}:{name}, which is not registered"
        assert len(reason) > 40, f"give {registry}:{name} a real reason"
    for (registry, name, _check) in NOT_APPLICABLE:
        assert name in REGISTRIES[registry], f"NOT_APPLICABLE lists {registry}:{name}, which is not registered"
    covered = {"tokenizers", "decoding", "metrics", "sources"}
    skipped_kinds = {registry for registry, _ in SKIPPED}
    assert skipped_kinds <= covered


# ---------------------------------------------------------------- tokenizers
TOKENIZER_OPTIONS: dict[str, dict[str, Any]] = {"vqgan": {"seed": 0}}


class TestEveryTokenizer(TokenizerConformance):
    @pytest.fixture(params=_names("tokenizers"))
    def tokenizer_name(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def tokenizer_options(self, tokenizer_name: str) -> dict[str, Any]:
        return TOKENIZER_OPTIONS.get(tokenizer_name, {})


# ------------------------------------------------------------------ decoding
DECODING_OPTIONS: dict[str, dict[str, Any]] = {
    "cfg": {"scale": 3.0},
    "cdk": {"k": 3, "alpha": 0.5},
    "dual_cfg": {"image_scale": 1.5, "text_scale": 7.5},
    "temperature": {"temperature": 0.7},
    "top_k": {"k": 5},
    "top_p": {"p": 0.6},
}


class TestEveryDecodingPiece(DecodingConformance):
    @pytest.fixture(params=_names("decoding"))
    def piece_name(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def piece_options(self, piece_name: str) -> dict[str, Any]:
        return DECODING_OPTIONS.get(piece_name, {})


# ------------------------------------------------------------------- metrics
class ColourEncoder:
    """A stand-in DocumentEncoder: an image's mean colour, a text's colour words (no download)."""

    COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
    dim = 4

    def _unit(self, rgb: np.ndarray) -> torch.Tensor:
        vec = torch.tensor([*(rgb - 0.5), 0.05], dtype=torch.float64)
        return (vec / vec.norm()).float()

    def encode_image(self, images: list[Any]) -> torch.Tensor:
        return torch.stack([self._unit(np.asarray(im, np.float64).mean(axis=(0, 1)) / 255.0) for im in images])

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            words = [self.COLOURS[w] for w in text.split() if w in self.COLOURS]
            rows.append(self._unit(np.mean(words, axis=0) if words else np.full(3, 0.5)))
        return torch.stack(rows)

    def encode_documents(self, docs: list[Any]) -> torch.Tensor:
        return self.encode_text([" ".join(doc.text) for doc in docs])


CANDIDATES = ["a red cube", "two blue balls", "a green cone on a table", "a cube", "red ball"]
REFERENCES = [["a red cube", "red box"], ["blue balls", "two balls"], ["a green cone"], ["a small cube", "cube"],
              ["a red ball"]]  # fmt: skip
ANSWERS = [["yes"] * 10, ["2"] * 4 + ["3"] * 6, ["red"] * 10, ["no"] * 9 + ["yes"], ["blue"] * 10]
PREDICTIONS = ["yes", "two", "blue", "no", "Blue."]


def _fid_updates() -> list[Any]:
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(24, 3, generator=g, dtype=torch.float64), torch.randn(24, 3, generator=g) * 2 + 1
    return [((chunk,), {"real": i % 2 == 0}) for i, chunk in enumerate(torch.cat([real, fake.double()]).split(8))]


def _clip_updates() -> list[Any]:
    colours = [(250, 10, 10), (10, 240, 30), (20, 20, 250), (128, 128, 128)]
    images = [Image.new("RGB", (8, 8), c) for c in colours]
    texts = ["a red square", "green", "a blue thing", "red and blue"]
    return [(([images[i], images[(i + 1) % 4]], [texts[i], texts[(i + 2) % 4]]), {}) for i in range(4)]


def _caption_updates() -> list[Any]:
    return [(([CANDIDATES[i]], [REFERENCES[i]]), {"ids": [i]}) for i in range(len(CANDIDATES))]


def _vqa_updates() -> list[Any]:
    return [(([PREDICTIONS[i]], [ANSWERS[i]]), {"ids": [i]}) for i in range(len(PREDICTIONS))]


# name -> (factory options of a cheap instance, the update calls of a small evaluation)
METRIC_INPUTS: dict[str, tuple[dict[str, Any], Any]] = {
    "fid": ({"num_features": 3}, _fid_updates),
    "clip_score": ({"encoder": ColourEncoder()}, _clip_updates),
    "cider_d": ({"tokenizer": "whitespace"}, _caption_updates),
    "vqa_accuracy": ({}, _vqa_updates),
}


class TestEveryMetric(MetricConformance):
    rel = 1e-7

    @pytest.fixture(params=_names("metrics"))
    def metric_name(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def metric_options(self, metric_name: str) -> dict[str, Any]:
        return self._inputs(metric_name)[0]

    @pytest.fixture
    def updates(self, metric_name: str) -> list[Any]:
        return self._inputs(metric_name)[1]()

    @staticmethod
    def _inputs(name: str) -> tuple[dict[str, Any], Any]:
        if name not in METRIC_INPUTS:
            pytest.fail(f"metric {name!r} is registered but METRIC_INPUTS gives it no inputs")
        return METRIC_INPUTS[name]


# ------------------------------------------------------------------- sources
def _pairs(root: Path, captions: dict[str, str | None]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, (stem, caption) in enumerate(captions.items()):
        (root / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (6, 4), (40 * i, 90, 200)).save(root / f"{stem}.png")
        if caption is not None:
            (root / f"{stem}.txt").write_text(caption)


def _folder(tmp_path: Path, bad: bool) -> Any:
    root = tmp_path / "folder"
    _pairs(root, {"a": "a blue square", "b": None if bad else "a red circle", "sub/c": "two shapes"})
    return (root, str(root / "b.png")) if bad else root


def _jsonl(tmp_path: Path, bad: bool) -> Any:
    _pairs(tmp_path, {"x": None, "y": None})
    lines = [json.dumps({"id": "x", "image": "x.png", "caption": "a cat"}),
             "{not json" if bad else json.dumps({"id": "y", "image": "y.png", "caption": "a dog"}),
             json.dumps({"caption": "codes only", "codes": [1, 2, 3, 4]})]  # fmt: skip
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return (path, f"{path}:2") if bad else path


def _corpus_inputs(writer: Any, named: Any) -> Any:
    """Inputs of a corpus source from tests/core/_corpora.py (fixtures written by the real libraries)."""

    def inputs(tmp_path: Path, bad: bool) -> Any:
        path = writer(tmp_path, _corpora.corpus(bad="image" if bad else None))
        return (path, named(path)) if bad else path

    return inputs


_CORPUS_SOURCES = {
    "webdataset": (lambda t, s: _corpora.write_tars(t / "wds", s) and t / "wds", lambda p: f"{p / '00000.tar'}:000001"),
    "parquet": (lambda t, s: _corpora.write_parquet(t / "a.parquet", s), lambda p: f"{p} row 1"),
    "hf": (lambda t, s: _corpora.write_hf(t / "hf", s), lambda p: f"{p} row 1"),
    "tsv": (lambda t, s: _corpora.write_tsv(t / "cc3m.tsv", s, None), lambda p: f"{p}:2"),
}

# name -> (factory options, inputs(tmp_path, bad) -> good path | (bad path, text naming the bad record))
SOURCE_INPUTS: dict[str, tuple[dict[str, Any], Any]] = {
    "folder": ({}, _folder),
    "jsonl": ({}, _jsonl),
    "world": ({"n": 3, "image_size": 32}, lambda tmp_path, bad: "-"),
    **{name: ({}, _corpus_inputs(*fns)) for name, fns in _CORPUS_SOURCES.items()},
}


class TestEverySource(SourceConformance):
    @pytest.fixture(params=_names("sources"))
    def source_name(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def source_options(self, source_name: str) -> dict[str, Any]:
        return self._inputs(source_name)[0]

    @pytest.fixture
    def good_input(self, source_name: str, tmp_path: Path) -> Any:
        return self._inputs(source_name)[1](tmp_path, False)

    @pytest.fixture
    def bad_input(self, source_name: str, tmp_path: Path) -> tuple[Any, str]:
        reason = NOT_APPLICABLE.get(("sources", source_name, "bad_input"))
        if reason:
            pytest.skip(reason)
        return self._inputs(source_name)[1](tmp_path, True)

    @staticmethod
    def _inputs(name: str) -> tuple[dict[str, Any], Any]:
        if name not in SOURCE_INPUTS:
            pytest.fail(f"source {name!r} is registered but SOURCE_INPUTS gives it no inputs")
        return SOURCE_INPUTS[name]


# ------------------------------------------------- the suites catch broken components
class _Lowercasing:
    """A lossy text tokenizer: ``decode(encode("A"))`` is ``"a"``."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.lower().encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def save(self, directory: Any) -> Path:
        return Path(directory)


class _Unbanning:
    """A processor that turns -inf into a large negative number (a banned token could be sampled)."""

    def __init__(self, options: Any = None) -> None:
        del options

    def __call__(self, logits: torch.Tensor, state: Any) -> torch.Tensor:
        return torch.nan_to_num(logits, neginf=-1e9)


class _MeanOfMeans:
    """A metric that averages per-rank means: right on one process, wrong for uneven ranks."""

    def __new__(cls, **kwargs: Any) -> Any:
        from torchmetrics import Metric

        class MeanOfMeans(Metric):
            def __init__(self, **kw: Any) -> None:
                super().__init__(**kw)
                self.add_state("mean", torch.zeros((), dtype=torch.float64), dist_reduce_fx="mean")
                self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

            def update(self, values: torch.Tensor) -> None:
                total = self.mean * self.count + values.double().sum()
                self.count = self.count + values.numel()
                self.mean = total / self.count

            def compute(self) -> torch.Tensor:
                return self.mean

        return MeanOfMeans(**kwargs)


def test_tokenizer_suite_catches_a_lossy_round_trip() -> None:
    from cm3leon.core.registry import TokenizerSpec

    spec = TokenizerSpec("lossy", _Lowercasing, "lossy", modality="text")
    with pytest.raises(AssertionError, match="came back as"):
        TokenizerConformance().test_text_round_trip_and_id_range(spec, _Lowercasing())


def test_decoding_suite_catches_an_unbanned_token() -> None:
    from cm3leon.core.registry import DecodingSpec

    spec = DecodingSpec("unban", _Unbanning, "unbans", kind="processor")
    with pytest.raises(AssertionError, match="banned"):
        DecodingConformance().test_processor_keeps_banned_tokens_banned(spec, _Unbanning())
    argmin = DecodingSpec("argmin", lambda options=None: lambda x, g: x.argmin(-1), "argmin", kind="selector")
    with pytest.raises(AssertionError, match="selected a banned"):
        DecodingConformance().test_selector_returns_valid_ids(argmin, argmin.build(None))


def test_metric_suite_catches_a_rank_dependent_reduction() -> None:
    from cm3leon.core.registry import MetricSpec

    spec = MetricSpec("mean_of_means", _MeanOfMeans, "wrong across ranks")
    updates = [((torch.tensor([float(i), 2.0 * i]),), {}) for i in range(5)]
    with pytest.raises(AssertionError, match="two ranks give"):
        MetricConformance().test_two_ranks_equal_one_process(spec, spec.build, updates, "uneven")


def test_source_suite_catches_an_error_that_names_nothing(tmp_path: Path) -> None:
    from cm3leon.core.registry import SourceSpec

    def vague(path: Any, **options: Any) -> Any:
        yield from ()
        raise ValueError("bad record")

    spec = SourceSpec("vague", vague, "names nothing")
    with pytest.raises(AssertionError, match="does not name"):
        SourceConformance().test_bad_record_is_named(spec, (tmp_path / "x.jsonl", f"{tmp_path / 'x.jsonl'}:2"), {})
