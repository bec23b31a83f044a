"""``cm3leon data prepare --workers N``: parts written in parallel, merged into one dataset.

The parallel result is compared with a single-process run of the same command: the same
samples (as multisets of ids and contents, and in the same order), statistics and bad
samples; a run interrupted (simulated here, a real SIGKILL in
tests/core/test_prepare_parallel_kill.py) resumes without losing or duplicating samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cm3leon.core.cli import cli
from cm3leon.core.corpora import hf_source, parquet_source, tsv_source, webdataset_source
from cm3leon.core.prepare_parallel import PrepareJob, run_worker, source_parts, work_dir
from cm3leon.core.shards import iter_samples, iter_token_samples, read_manifest
from cm3leon.core.sources import folder_source, jsonl_source
from tests.core._corpora import Sample, write_hf, write_parquet, write_tars, write_tsv

REPO = Path(__file__).resolve().parents[2]


def make_folder(root: Path, n: int, *, bad: int | None = None) -> Path:
    """``n`` image/caption pairs in two sub-folders; pair ``bad`` has no caption."""
    rng = np.random.default_rng(3)
    for i in range(n):
        stem = root / ("a" if i % 2 else "b") / f"img{i:03d}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(stem.with_suffix(".png"))
        if i != bad:
            stem.with_suffix(".txt").write_text(f"picture number {i}\n", encoding="utf-8")
    return root


def samples(n: int, *, corrupt: int | None = None) -> list[Sample]:
    return [Sample(f"{i:06d}", f"caption {i}", (4 + i % 3, 5), corrupt=i == corrupt) for i in range(n)]


def prepare(*args: str) -> Any:
    return CliRunner().invoke(cli, ["data", "prepare", *args])


def report_of(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):])


def contents(out: Path) -> list[tuple[str, str]]:
    """``(id, sample as canonical JSON)`` of every sample, in order."""
    rows = []
    for _, sample in iter_samples(out):
        plain = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in sample.items()}
        rows.append((str(sample["id"]), json.dumps(plain, sort_keys=True)))
    return rows


def assert_same_dataset(single: Path, parallel: Path) -> None:
    one, many = contents(single), contents(parallel)
    assert Counter(many) == Counter(one)  # the same multiset of samples
    assert many == one  # and, merged in part order, the same order
    a, b = read_manifest(single), read_manifest(parallel)
    assert (a["kind"], a["columns"], a["vocab"], a["stats"]) == (b["kind"], b["columns"], b["vocab"], b["stats"])
    assert {k: v for k, v in b["meta"].items() if k != "parallel"} == a["meta"]


# ------------------------------------------------------------------ parts
PART_CASES = {
    "folder": lambda tmp: (folder_source(make_folder(tmp / "f", 7, bad=3), skip_bad=True), 3),
    "jsonl": lambda tmp: (jsonl_source(_jsonl(tmp / "p.jsonl", 7), skip_bad=True), 2),
    "tsv": lambda tmp: (tsv_source(write_tsv(tmp / "c.tsv", samples(7, corrupt=4), tmp / "img"),
                                   image_root=str(tmp / "img"), skip_bad=True), 3),
    "webdataset": lambda tmp: (webdataset_source(_tars(tmp / "w", samples(7, corrupt=2)), skip_bad=True), 1),
    "parquet": lambda tmp: (parquet_source(_parquets(tmp / "pq", samples(7, corrupt=5)), skip_bad=True), 1),
    "hf": lambda tmp: (hf_source(write_hf(tmp / "hf", samples(7, corrupt=1)), skip_bad=True), 3),
}


def _jsonl(path: Path, n: int) -> Path:
    lines = [json.dumps({"caption": f"c{i}", "codes": [i, i, i, i], "id": f"j{i}"}) for i in range(n)]
    lines.insert(3, "")  # a blank line is no record
    lines.insert(5, "{not json")
    path.write_text("\n".join(lines), encoding="utf-8")  # and no newline after the last line
    return path


def _tars(folder: Path, items: list[Sample]) -> Path:
    write_tars(folder, items, per_shard=2)
    return folder


def _parquets(folder: Path, items: list[Sample]) -> Path:
    for i in range(0, len(items), 3):
        write_parquet(folder / f"{i // 3:05d}.parquet", items[i: i + 3])
    return folder


@pytest.mark.parametrize("name", sorted(PART_CASES))
def test_parts_concatenated_are_the_whole_source(tmp_path: Path, name: str) -> None:
    whole, size = PART_CASES[name](tmp_path)
    docs = [(d.id, d.to_json()) for d in whole]
    parts = whole.parts(size)
    assert len(parts) > 1 and len({label for label, _ in parts}) == len(parts)
    from_parts = [(d.id, d.to_json()) for _, part in parts for d in part]
    assert from_parts == docs and len(docs) >= 5
    assert [s for _, part in parts for s in part.skipped] == whole.skipped and len(whole.skipped) == 1


# --------------------------------------------------- parallel == single
def test_folder_with_two_workers_equals_one_process(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pairs", 11, bad=4)
    common = ["--source", "folder", str(folder), "--skip-bad"]
    single = report_of(prepare(*common, "--out", str(tmp_path / "one")))
    many = report_of(prepare(*common, "--out", str(tmp_path / "two"), "--workers", "2", "--part-size", "3"))
    assert_same_dataset(tmp_path / "one", tmp_path / "two")
    assert many["written"] == single["written"] == 10
    assert many["skipped_items"] == single["skipped_items"] and many["skipped"] == 1
    per_worker = many["parallel"]["per_worker"]
    assert [w["worker"] for w in per_worker] == ["1/2", "2/2"]
    assert [w["parts"] for w in per_worker] == [2, 2]  # 4 parts of 3, 3, 3, 2 images, alternating
    assert sum(w["written"] for w in per_worker) == 10 and sum(w["skipped"] for w in per_worker) == 1
    bad = next(w for w in per_worker if w["skipped"])
    assert "img004" in bad["skipped_items"][0][0]
    assert read_manifest(tmp_path / "two")["meta"]["parallel"] == {"parts": 4, "workers": 2, "part_size": 3}
    assert not work_dir(tmp_path / "two").exists()


def test_webdataset_with_three_workers_equals_one_process(tmp_path: Path) -> None:
    shards = _tars(tmp_path / "wds", samples(9, corrupt=6))
    common = ["--source", "webdataset", str(shards), "--skip-bad"]
    single = report_of(prepare(*common, "--out", str(tmp_path / "one")))
    many = report_of(prepare(*common, "--out", str(tmp_path / "three"), "--workers", "3"))
    assert_same_dataset(tmp_path / "one", tmp_path / "three")
    assert many["parallel"]["parts"] == 5  # one per tar
    assert many["skipped"] == single["skipped"] == 1 and many["written"] == 8
    assert sum(w["skipped"] for w in many["parallel"]["per_worker"]) == 1
    assert "000006" in many["skipped_items"][0][0]


def test_token_shards_from_jsonl_with_workers(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", 9)
    common = ["--source", "jsonl", str(path), "--kind", "tokens", "--text-tokenizer", "bytes",
              "--image-codebook-size", "16", "--skip-bad"]
    report_of(prepare(*common, "--out", str(tmp_path / "one")))
    report_of(prepare(*common, "--out", str(tmp_path / "two"), "--workers", "2", "--part-size", "2"))
    assert_same_dataset(tmp_path / "one", tmp_path / "two")
    assert [s.id for s in iter_token_samples(tmp_path / "two")] == [f"j{i}" for i in range(9)]


# ----------------------------------------------------------------- resume
def test_an_interrupted_run_resumes_keeping_finished_parts_only(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pairs", 10)
    out = tmp_path / "two"
    report_of(prepare("--source", "folder", str(folder), "--out", str(tmp_path / "one")))
    job = PrepareJob("folder", str(folder), {}, meta=_meta(folder), part_size=2)
    parts = source_parts(job)
    work = work_dir(out)
    from cm3leon.core.prepare_parallel import _plan

    work.mkdir()
    (work / "plan.json").write_text(json.dumps(_plan(job, [label for label, _ in parts])))
    run_worker(job, parts, work, 0, 2, progress=False)  # worker 1 of 2 finished: parts 0, 2, 4
    assert sorted(p.name for p in work.glob("part-*.json")) == ["part-00000.json", "part-00002.json",
                                                                 "part-00004.json"]
    (work / "part-00002.json").unlink()  # killed between its dataset and its record
    (work / ".part-00001.x.partial").mkdir()  # killed mid-part
    (work / ".part-00001.x.partial" / "shard.00000.mds").write_bytes(b"half")
    report = report_of(prepare("--source", "folder", str(folder), "--out", str(out), "--workers", "2",
                               "--part-size", "2"))
    assert_same_dataset(tmp_path / "one", out)
    assert report["parallel"]["resumed_parts"] == 2  # parts 0 and 4 were kept, 2 rewritten
    assert not work.exists()


def _meta(folder: Path) -> dict[str, Any]:
    """What the CLI records for ``--source folder FOLDER`` (documents)."""
    return {"source": "folder", "task": None, "path": str(folder), "options": {}, "kind": "documents",
            "text_tokenizer": None, "image_tokenizer": None}


def test_work_from_other_options_is_discarded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = make_folder(tmp_path / "pairs", 6)
    out = tmp_path / "two"
    job = PrepareJob("folder", str(folder), {}, meta=_meta(folder), part_size=4)
    parts = source_parts(job)
    work = work_dir(out)
    work.mkdir()
    run_worker(job, parts, work, 0, 1, progress=False)  # finished parts, but of part size 4, no plan
    report_of(prepare("--source", "folder", str(folder), "--out", str(tmp_path / "one")))
    with caplog.at_level("WARNING", logger="cm3leon.data"):
        report = report_of(prepare("--source", "folder", str(folder), "--out", str(out), "--workers", "2",
                                   "--part-size", "2"))
    assert "starting over" in caplog.text
    assert_same_dataset(tmp_path / "one", out)
    assert report["parallel"]["resumed_parts"] == 0


# ----------------------------------------------------------------- errors
def test_duplicate_ids_across_parts_are_named(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text("".join(json.dumps({"caption": f"c{i}", "codes": [1, 2], "id": "same" if i in (0, 3) else str(i)})
                            + "\n" for i in range(4)), encoding="utf-8")
    result = prepare("--source", "jsonl", str(path), "--out", str(tmp_path / "o"), "--kind", "tokens",
                     "--text-tokenizer", "bytes", "--image-codebook-size", "4", "--workers", "2", "--part-size", "2")
    assert result.exit_code != 0
    assert "duplicate sample id 'same' in parts 0 (dup.jsonl lines 1:3) and 1 (dup.jsonl lines 3:5)" in result.output
    assert not (tmp_path / "o").exists()


def test_a_bad_sample_fails_naming_it_and_the_worker(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pairs", 6, bad=5)
    result = prepare("--source", "folder", str(folder), "--out", str(tmp_path / "o"), "--workers", "2",
                     "--part-size", "2")
    assert result.exit_code != 0
    assert "worker 2/2 failed" in result.output and "img005.png: no caption file img005.txt" in result.output
    assert not (tmp_path / "o").exists()
    # The other parts were finished: fixing the input and re-running resumes them.
    (folder / "a" / "img005.txt").write_text("now captioned", encoding="utf-8")
    report = report_of(prepare("--source", "folder", str(folder), "--out", str(tmp_path / "o"), "--workers", "2",
                               "--part-size", "2"))
    assert report["written"] == 6 and report["parallel"]["resumed_parts"] == 2


def test_parallel_usage_errors(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pairs", 2)
    out = ["--out", str(tmp_path / "o")]
    task = prepare("--task", "coco_captioning", str(folder), *out, "--workers", "2")
    assert task.exit_code == 2 and "--task datasets are prepared by one process" in task.output
    most = prepare("--source", "folder", str(folder), *out, "--workers", "2", "--max-samples", "1")
    assert most.exit_code == 2 and "--max-samples needs one process" in most.output
    size = prepare("--source", "folder", str(folder), *out, "--part-size", "5")
    assert size.exit_code == 2 and "--part-size applies to parallel preparation" in size.output
    world = prepare("--source", "world", "-", *out, "-o", "n=4", "--workers", "2")
    assert world.exit_code == 1 and "source 'world' cannot be prepared in parallel" in world.output
    (tmp_path / "o").mkdir()
    exists = prepare("--source", "folder", str(folder), *out, "--workers", "2")
    assert exists.exit_code == 1 and "already exists" in exists.output


def test_a_locked_output_fails_clearly(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pairs", 4)
    out = tmp_path / "o"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom cm3leon.core.locks import DirectoryLock\n"
         f"with DirectoryLock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        result = prepare("--source", "folder", str(folder), "--out", str(out), "--workers", "2")
        assert result.exit_code == 1 and f"in use by pid {holder.pid}" in result.output, result.output
        assert time.monotonic() - start < 60 and not out.exists() and not work_dir(out).exists()
    finally:
        holder.kill()
        holder.wait()
