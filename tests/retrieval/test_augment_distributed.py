"""Augmentation in parts, across ranks: same examples as one process, resumable, per-rank progress.

Fast tests run the part logic in one process; the ``slow`` ones launch real ranks with
``composer -n 2 -m cm3leon.retrieval.augment`` (gloo) and SIGKILL a run midway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cm3leon.core.shards import DocumentShardWriter, iter_token_samples, verify_dataset
from cm3leon.retrieval.augment import augment_shards, part_dir, part_owners, plan_parts, work_dir
from cm3leon.retrieval.build import build_bank
from cm3leon.retrieval.config import AugmentConfig, BankConfig, DocumentsConfig
from cm3leon.retrieval.strategy import RetrievalStrategy
from tests.retrieval.synthetic import shape_documents
from tests.retrieval.test_augment import CODEBOOK, with_codes

REPO = Path(__file__).resolve().parents[2]
COMPOSER = str(Path(sys.executable).with_name("composer"))
N_DOCS = 90
LIMIT = 30  # queries of the in-process tests


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """Document shards in several MDS shard files (two datasets) and a bank built over them."""
    root = tmp_path_factory.mktemp("augment_dist")
    docs = [with_codes(d) for d in shape_documents(N_DOCS, seed=71)]
    for name, chunk in (("docs_a", docs[:60]), ("docs_b", docs[60:])):
        with DocumentShardWriter(root / name, size_limit=1 << 14) as w:
            for d in chunk:
                w.write(d)
    shards = [str(root / "docs_a"), str(root / "docs_b")]
    build_bank(BankConfig(output=str(root / "bank"), data=DocumentsConfig(shards=shards),
                          encoder=str(tiny_encoder_dir), device="cpu"), progress=False)
    return root


def _cfg(root: Path, out: str, *, limit: int = 0, **kw) -> AugmentConfig:
    data = DocumentsConfig(shards=[str(root / "docs_a"), str(root / "docs_b")], limit=limit)
    base = dict(output=str(root / out), data=data,
                bank=str(root / "bank"), text_tokenizer="bytes", image_codebook_size=CODEBOOK, tokens_per_image=16,
                batch_size=4, part_size=7, device="cpu", strategy=RetrievalStrategy(seed=9))
    return AugmentConfig(**{**base, **kw})


def _samples(path: Path) -> list[tuple[str, list[int], list[list[int]]]]:
    return [(s.id, s.tokens.tolist(), s.parts.tolist()) for s in iter_token_samples(path)]


def test_parts_stay_inside_shard_files_and_ranks_get_equal_contiguous_shares(corpus: Path) -> None:
    shards, parts = plan_parts(_cfg(corpus, "x"))
    assert len(shards) > 2 and parts[-1].stop == N_DOCS
    assert [p.start for p in parts[1:]] == [p.stop for p in parts[:-1]]  # every query once, in order
    for p in parts:
        s = shards[p.shard]
        assert s.first_row <= p.start < p.stop <= s.first_row + s.rows and p.stop - p.start <= 7
    for world in (1, 2, 3):
        owners = part_owners(parts, world)
        assert owners == sorted(owners) and set(owners) == set(range(world))
        rows = [sum(p.stop - p.start for p, o in zip(parts, owners, strict=True) if o == r) for r in range(world)]
        assert max(rows) - min(rows) <= 2 * 7


class FailingAfter:
    """Wraps a retriever; raises after ``n`` calls (a crash midway through a run)."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n = inner, n

    def retrieve(self, batch, k, training=True):
        self.n -= 1
        if self.n < 0:
            raise RuntimeError("simulated crash")
        return self.inner.retrieve(batch, k, training=training)


def test_a_failed_run_resumes_from_its_complete_parts(corpus: Path) -> None:
    from cm3leon.retrieval.augment import build_retriever

    whole = _cfg(corpus, "whole", limit=LIMIT)
    report = augment_shards(whole, progress=False)
    assert report["examples"] == LIMIT and report["parts"] == len(plan_parts(whole)[1])
    assert not work_dir(whole).exists()
    cfg = _cfg(corpus, "resumed", limit=LIMIT)
    with pytest.raises(RuntimeError, match="simulated crash"):
        augment_shards(cfg, progress=False, retriever=FailingAfter(build_retriever(cfg), 5))  # 2 parts + 1 batch
    _, parts = plan_parts(cfg)
    done = [p for p in parts if (part_dir(cfg, p) / "COMPLETE").is_file()]
    assert len(done) == 2 and not Path(cfg.output).exists()
    inodes = {(part_dir(cfg, p) / "shard.00000.mds").stat().st_ino for p in done}
    status = json.loads((work_dir(cfg) / "rank-00000.json").read_text())
    assert status["state"] == "failed" and "simulated crash" in status["error"]
    again = augment_shards(cfg, progress=False)
    assert again["ranks"][0]["resumed"] == 2 and again["ranks"][0]["done"] == len(parts) - 2
    assert _samples(Path(cfg.output)) == _samples(Path(whole.output))
    merged = {p.stat().st_ino for p in Path(cfg.output).glob("shard.*.mds")}
    assert inodes <= merged  # the finished parts were merged as written, not written again
    assert not work_dir(cfg).exists()


def test_parts_made_with_other_settings_are_not_reused(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    from cm3leon.retrieval.augment import build_retriever

    cfg = _cfg(corpus, "changed", limit=LIMIT)
    with pytest.raises(RuntimeError):
        augment_shards(cfg, progress=False, retriever=FailingAfter(build_retriever(cfg), 3))
    assert any(part_dir(cfg, p).exists() for p in plan_parts(cfg)[1])
    other = _cfg(corpus, "changed", limit=LIMIT, strategy=RetrievalStrategy(seed=10))
    report = augment_shards(other, progress=False)
    assert report["ranks"][0]["resumed"] == 0 and report["examples"] == LIMIT
    assert "left over from a run with other settings" in caplog.text


def test_device_option(corpus: Path, monkeypatch: pytest.MonkeyPatch, tiny_encoder) -> None:
    import torch

    from cm3leon.retrieval import augment, encoder

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="augment.device: 'cuda' requested but CUDA is not available"):
            augment_shards(_cfg(corpus, "cuda", device="cuda"), progress=False)
    with pytest.raises(ValueError, match="augment.device: must be one of auto, cpu, cuda, got 'tpu'"):
        augment_shards(_cfg(corpus, "tpu", device="tpu"), progress=False)
    loaded = []
    monkeypatch.setattr(encoder, "load_encoder", lambda path, **kw: loaded.append((path, kw)) or tiny_encoder)
    retriever = augment.build_retriever(_cfg(corpus, "dev"), device="cuda:1")
    assert loaded and loaded[0][1]["device"] == "cuda:1"  # the bank's encoder, loaded on the device
    assert retriever.encoder is tiny_encoder


# ---------------------------------------------------------------- real ranks
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    return env


def _write_config(path: Path, cfg: AugmentConfig) -> Path:
    from dataclasses import asdict

    body = asdict(cfg)
    path.write_text(f"# composer -n 2 -m cm3leon.retrieval.augment {path}\n" + yaml.safe_dump({"augment": body}))
    return path


def _launch(config: Path, log: Path, port: int) -> subprocess.Popen:
    cmd = [COMPOSER, "-n", "2", "--master_port", str(port), "-m", "cm3leon.retrieval.augment", str(config)]
    fh = open(log, "wb")  # noqa: SIM115 -- closed by the caller through proc.stdout
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 900) -> str:
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert code == 0, text[-4000:]
    return text


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.world_size(2)
def test_two_ranks_write_the_single_process_examples(corpus: Path, tmp_path: Path) -> None:
    single = augment_shards(_cfg(corpus, "single"), progress=False)
    cfg = _cfg(corpus, "two", output=str(tmp_path / "two"))
    log = tmp_path / "launch.log"
    text = _finish(_launch(_write_config(tmp_path / "augment.yaml", cfg), log, 29800 + os.getpid() % 100), log)
    assert _samples(tmp_path / "two") == _samples(corpus / "single")
    info = verify_dataset(tmp_path / "two")
    report = info.meta["report"]
    assert report["world_size"] == 2 and report["examples"] == single["examples"] == N_DOCS
    assert [r["parts"] for r in report["ranks"]] == [sum(1 for o in part_owners(plan_parts(cfg)[1], 2) if o == r)
                                                     for r in (0, 1)]
    assert all(r["parts"] > 0 for r in report["ranks"])
    for rank in (0, 1):  # rank 0 prints one line per rank, with its parts
        assert f"augment rank {rank}/2: {report['ranks'][rank]['parts']}/{report['ranks'][rank]['parts']} parts" in text
    assert not work_dir(cfg).exists()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.world_size(2)
def test_a_killed_two_rank_run_resumes_without_duplicates(corpus: Path, tmp_path: Path) -> None:
    reference = _cfg(corpus, "reference", part_size=2)
    augment_shards(reference, progress=False)
    cfg = _cfg(corpus, "killed", output=str(tmp_path / "killed"), part_size=2)
    config = _write_config(tmp_path / "augment.yaml", cfg)
    parts = plan_parts(cfg)[1]
    proc = _launch(config, tmp_path / "first.log", 29900 + os.getpid() % 100)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if sum((part_dir(cfg, p) / "COMPLETE").is_file() for p in parts) >= 4:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # launcher and both ranks, no cleanup
        proc.wait()
    done = [p for p in parts if (part_dir(cfg, p) / "COMPLETE").is_file()]
    assert 4 <= len(done) < len(parts), "the run was not killed midway"
    assert not Path(cfg.output).exists()
    inodes = {(part_dir(cfg, p) / "shard.00000.mds").stat().st_ino for p in done}
    text = _finish(_launch(config, tmp_path / "second.log", 29950 + os.getpid() % 50), tmp_path / "second.log")
    samples = _samples(tmp_path / "killed")
    assert len({s[0] for s in samples}) == len(samples) == N_DOCS  # every query once
    assert samples == _samples(corpus / "reference")
    assert inodes <= {p.stat().st_ino for p in (tmp_path / "killed").glob("shard.*.mds")}  # kept, not redone
    report = verify_dataset(tmp_path / "killed").meta["report"]
    assert sum(r["resumed"] for r in report["ranks"]) == len(done)
    assert "resumed)" in text and not work_dir(cfg).exists()
