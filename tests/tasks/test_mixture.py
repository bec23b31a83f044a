"""SFT mixtures: the 3/0.3 balancing rule, determinism, shards the trainer reads."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.plugin_manager import registries_with
from cm3leon.core.registry import TaskSpec, TokenizerSpec
from cm3leon.core.shards import iter_documents, iter_token_samples, verify_dataset
from cm3leon.tasks.builtin.caption import CaptionTask
from cm3leon.tasks.mixture import (
    BalanceConfig,
    MixtureConfig,
    MixtureTaskConfig,
    OutputConfig,
    SourceConfig,
    balance_counts,
    build_mixture,
    sample_plan,
)

SIZES = {"mix_small": 20, "mix_medium": 300, "mix_large": 2000}
WEIGHTS = {"mix_small": 1.0, "mix_medium": 1.0, "mix_large": 0.2}


def synthetic_reader(path: str, *, split: str | None = None, skip_bad: bool = False,
                     stats: dict | None = None, n: int = 10, broken_every: int = 0) -> Any:  # fmt: skip
    """Yields ``n`` caption records with 4x4 images whose colour encodes the index."""
    for i in range(n):
        if stats is not None:
            stats["records"] = stats.get("records", 0) + 1
        caption = "" if broken_every and i % broken_every == 0 else f"item {i} of {path}"
        yield {"id": str(i), "image": Image.new("RGB", (4, 4), (i % 256, i // 256, 7)), "caption": caption}


class MixPlugin:
    @hookimpl
    def cm3leon_register_tasks(self) -> list[TaskSpec]:
        return [TaskSpec(name, lambda name=name: CaptionTask(name, ("{caption} <break> {image}",)), "test task",
                         inputs=("image",), outputs=("text",), reader=synthetic_reader) for name in SIZES]

    @hookimpl
    def cm3leon_register_tokenizers(self) -> list[TokenizerSpec]:
        from cm3leon.tasks.testing import ProbeImageTokenizer

        return [TokenizerSpec("probe_image", ProbeImageTokenizer, "test image tokenizer", modality="image")]


@pytest.fixture(scope="module")
def registries() -> Any:
    return registries_with(MixPlugin())


def _config(out: Path, seed: int = 0, **output: Any) -> MixtureConfig:
    tasks = [MixtureTaskConfig(task=name, weight=WEIGHTS[name],
                               sources=[SourceConfig(path=name, options={"n": n})]) for name, n in SIZES.items()]
    return MixtureConfig(name="test", seed=seed, tasks=tasks, output=OutputConfig(path=str(out), **output))


def expected_counts(sizes: dict[str, int], weights: dict[str, float], up: float = 3.0, down: float = 0.3,
                    total: int | None = None) -> dict[str, int]:  # fmt: skip
    """Appendix E.1 as stated in the docs, written independently of the implementation."""
    t = total if total is not None else sum(sizes.values())
    wsum = sum(weights.values())
    return {k: round(min(up, max(down, weights[k] / wsum * t / sizes[k])) * sizes[k]) for k in sizes}


def test_balance_rule_by_hand() -> None:
    factors, counts = balance_counts(SIZES, WEIGHTS)
    # N = 2320, shares 1/2.2, 1/2.2, 0.2/2.2: targets 1054.5, 1054.5, 210.9 documents.
    assert factors == {"mix_small": 3.0, "mix_medium": 3.0, "mix_large": 0.3}
    assert counts == {"mix_small": 60, "mix_medium": 900, "mix_large": 600} == expected_counts(SIZES, WEIGHTS)
    # Inside the thresholds a task gets exactly its share of the total.
    _, counts = balance_counts({"a": 100, "b": 200}, {"a": 1.0, "b": 1.0})
    assert counts == {"a": 150, "b": 150}
    _, counts = balance_counts({"a": 100, "b": 200}, {"a": 1.0, "b": 0.0}, total=50)
    assert counts == {"a": 50, "b": 0}
    with pytest.raises(ValueError, match="min_downsample"):
        balance_counts({"a": 1}, {"a": 1.0}, min_downsample=2.0)
    with pytest.raises(ValueError, match="no task"):
        balance_counts({"a": 0}, {"a": 1.0})


@pytest.mark.parametrize("seed", range(5))
def test_balance_factors_always_within_thresholds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = {f"t{i}": int(n) for i, n in enumerate(rng.integers(1, 10_000, size=8))}
    weights = {k: float(w) for k, w in zip(sizes, rng.random(8) + 0.01, strict=True)}
    factors, counts = balance_counts(sizes, weights)
    assert all(0.3 <= f <= 3.0 for f in factors.values())
    assert counts == expected_counts(sizes, weights)


def test_sample_plan_repeats_and_subsamples() -> None:
    plan = sample_plan([4, 10], [10, 3], seed=1)
    per = Counter(map(tuple, plan.tolist()))
    assert sorted(per[(0, d)] for d in range(4)) == [2, 2, 3, 3]
    assert sum(1 for (t, _), c in per.items() if t == 1) == 3 and all(c == 1 for (t, _), c in per.items() if t == 1)
    assert np.array_equal(plan, sample_plan([4, 10], [10, 3], seed=1))
    assert not np.array_equal(plan, sample_plan([4, 10], [10, 3], seed=2))


def test_mixture_realises_the_rule(tmp_path: Path, registries: Any) -> None:
    report = build_mixture(_config(tmp_path / "mix"), registries=registries, progress=False)
    want = expected_counts(SIZES, WEIGHTS)
    assert report.count == want and report.natural == SIZES and report.written == sum(want.values())
    docs = list(iter_documents(tmp_path / "mix"))
    tasks = [d.meta["task"] for d in docs]
    assert Counter(tasks) == want
    per_doc = Counter((d.meta["task"], d.meta["record"]) for d in docs)
    assert {c for (t, _), c in per_doc.items() if t != "mix_large"} == {3}  # up-sampled at most 3x
    assert len([k for k in per_doc if k[0] == "mix_large"]) == 600  # 0.3x, distinct documents
    assert len({d.id for d in docs}) == len(docs)
    # Any prefix of the shuffled stream matches the realised shares within sampling error.
    total = len(docs)
    for prefix in (200, 500, 1000):
        seen = Counter(tasks[:prefix])
        for name, count in want.items():
            p = count / total
            sigma = math.sqrt(prefix * p * (1 - p) * (total - prefix) / (total - 1))
            assert abs(seen[name] - prefix * p) <= 4 * sigma + 1, (prefix, name, seen[name], prefix * p)
    meta = verify_dataset(tmp_path / "mix").meta["mixture"]
    assert meta["count"] == want and meta["factor"]["mix_large"] == 0.3
    assert meta["written"] == report.written == len(docs)  # not 0: the count the command prints


def test_mixture_is_deterministic_and_staging_is_reused(tmp_path: Path, registries: Any) -> None:
    build_mixture(_config(tmp_path / "a"), registries=registries, progress=False)
    staging = tmp_path / "a.staging"
    stamps = {p: p.stat().st_mtime_ns for p in staging.rglob("manifest.json")}
    build_mixture(_config(tmp_path / "a", **{"overwrite": True}), registries=registries, progress=False)
    assert {p: p.stat().st_mtime_ns for p in staging.rglob("manifest.json")} == stamps  # reused
    build_mixture(_config(tmp_path / "b"), registries=registries, progress=False)
    build_mixture(_config(tmp_path / "c", seed=1), registries=registries, progress=False)
    ids = {k: [d.id for d in iter_documents(tmp_path / k)] for k in "abc"}
    assert ids["a"] == ids["b"] and ids["a"] != ids["c"] and sorted(ids["a"]) != sorted(ids["c"])


def test_mixture_token_shards_for_the_trainer(tmp_path: Path, registries: Any) -> None:
    cfg = _config(tmp_path / "tok", format="tokens", text_tokenizer="bytes", image_tokenizer="probe_image")
    cfg.tasks = cfg.tasks[:2]
    report = build_mixture(cfg, registries=registries, progress=False)
    samples = list(iter_token_samples(tmp_path / "tok"))
    assert len(samples) == report.written == sum(report.count.values())
    info = verify_dataset(tmp_path / "tok")
    vocab = info.vocab
    first = samples[0].tokens
    assert first[0] == vocab.eos_id and first[-1] == vocab.break_id
    assert (first >= vocab.image_offset).sum() == 4  # one 2x2 probe image per example
    # Every example carries its caption's token range (the task target) for the trainer.
    for sample in samples:
        (start, end), = sample.targets.tolist()
        caption = bytes((sample.tokens[start:end] - vocab.text_offset).tolist()).decode()
        assert start == 1 and caption.startswith("item ") and sample.tokens[end] == vocab.break_id
    assert info.stats["samples_with_targets"] == len(samples)


def test_bad_records_fail_or_are_counted(tmp_path: Path, registries: Any) -> None:
    cfg = _config(tmp_path / "bad")
    cfg.tasks = cfg.tasks[:1]
    cfg.tasks[0].sources[0].options["broken_every"] = 5
    with pytest.raises(ValueError, match="mix_small.*record '0'.*'caption' is empty"):
        build_mixture(cfg, registries=registries, progress=False)
    cfg.skip_bad = True
    report = build_mixture(cfg, registries=registries, progress=False)
    assert report.natural == {"mix_small": 16} and report.reader_stats["mix_small"]["skipped.render"] == 4


def test_config_errors(tmp_path: Path, registries: Any) -> None:
    cfg = _config(tmp_path / "x")
    cfg.tasks.append(MixtureTaskConfig(task="mix_small", sources=[SourceConfig(path="p")]))
    with pytest.raises(ValueError, match="one entry per task"):
        build_mixture(cfg, registries=registries, progress=False)
    cfg = _config(tmp_path / "x")
    cfg.tasks[0].task = "no_such_task"
    with pytest.raises(KeyError, match=r"unknown task 'no_such_task' \(at tasks\[0\]\.task\)"):
        build_mixture(cfg, registries=registries, progress=False)
    cfg = _config(tmp_path / "x")
    cfg.tasks[0].options = {"no_such_option": 1}
    with pytest.raises(ValueError, match=r"tasks\[0\] \(mix_small\): bad options"):
        build_mixture(cfg, registries=registries, progress=False)
    with pytest.raises(ValueError, match="needs output.text_tokenizer"):
        build_mixture(_config(tmp_path / "y", format="tokens"), registries=registries, progress=False)
    assert BalanceConfig().max_upsample == 3.0 and BalanceConfig().min_downsample == 0.3
