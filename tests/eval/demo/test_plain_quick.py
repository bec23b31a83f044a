"""Plain pretraining at equal compute, end to end at test scale: `cm3leon demo --quick` with
`plain.enabled` and a token budget runs plain_data, plain_pretrain and the plain evaluations,
and the summary reads both runs' token counts back (about 8 minutes on a loaded 2-core CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.eval.demo.test_demo_quick import _cm3leon

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_demo_with_plain_pretraining(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _cm3leon("demo", "--quick", "--no-progress", "--out", str(out), "plain.enabled=true",
                    "plain.global_batch_size=16", "pretrain.max_duration=6000tok",
                    "pretrain.scheduler.warmup=0.1dur", "world.entity_docs=60", "world.entities=20",
                    "captioning.enabled=false", "vqa.enabled=false", "editing.enabled=false")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    compute = summary["ra_vs_plain"]["compute"]
    ra, plain = compute["retrieval_augmented"], compute["plain"]
    assert ra["tokens"] >= 6000 and plain["tokens"] >= 6000 and compute["equal"] is True
    assert plain["examples"] / plain["batches"] == 16 and ra["examples"] / ra["batches"] == 8
    comparisons = {(c["prompts"], c["ra_k"]) for c in summary["ra_vs_plain"]["comparisons"]}
    assert comparisons == {("head", 0), ("head", 2), ("tail", 0), ("tail", 2)}
    config = (out / "configs" / "plain_pretrain.yaml").read_text()
    assert str(out / "data" / "pretrain_plain") in config and "max_duration: 6000tok" in config
    assert "Retrieval-augmented vs plain pretraining at equal compute" in (out / "report.html").read_text()
