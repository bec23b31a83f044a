"""Elastic resume (issue 20 item 3; reliability list 6): a run trained on 2 gloo ranks and
resumed from its checkpoint on 1 rank trains on the same global samples per step as the
uninterrupted 2-rank run, and its losses agree (not bitwise: the reduction order changes).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from cm3leon.core.train.logs import read_metrics
from tests.core.train._helpers import COMPOSER, REPO, subprocess_env, tiny_config, write_config

IDS_TRAIN = str(Path(__file__).with_name("_ids_train.py"))
STEPS, RESUME_AT = 12, 4  # 8 steps per epoch: the resumed part crosses into epoch 1

pytestmark = [pytest.mark.integration, pytest.mark.world_size(2), pytest.mark.slow]


def _launch(n: int, config: Path, log: Path, *overrides: str) -> None:
    port = str(29500 + (os.getpid() + n * 7) % 1000)
    with open(log, "ab") as fh:
        proc = subprocess.run([COMPOSER, "-n", str(n), "--master_port", port, IDS_TRAIN, str(config), *overrides],
                              cwd=REPO, env=subprocess_env(MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo"),
                              stdout=fh, stderr=subprocess.STDOUT, timeout=900, check=False)
    assert proc.returncode == 0, log.read_text()[-4000:]


def _global_ids(run_dir: Path) -> dict[int, list[int]]:
    """Sample ids per step, summed over the ranks' records."""
    steps: dict[int, list[int]] = {}
    for path in sorted((run_dir / "probe").glob("ids-rank*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            steps.setdefault(row["batch"], []).extend(row["ids"])
    return {k: sorted(v) for k, v in steps.items()}


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["batch"]: r["loss/train/total"] for r in read_metrics(run_dir / "metrics.jsonl")
            if "loss/train/total" in r}


def test_two_ranks_then_one_rank_trains_on_the_same_global_samples(tmp_path: Path, token_data: Path) -> None:
    def config(name: str, **extra: object) -> Path:
        cfg = tiny_config(tmp_path / name, {"ra": {"local": str(token_data)}}, max_duration=f"{STEPS}ba",
                          **{"checkpoint.save_interval": f"{RESUME_AT}ba", "data.num_canonical_nodes": 1,
                             **extra})
        return write_config(tmp_path / f"{name}.yaml", cfg)

    _launch(2, config("two_ranks"), tmp_path / "two_ranks.log")  # the uninterrupted reference
    checkpoint = tmp_path / "two_ranks" / "checkpoints" / f"ep0-ba{RESUME_AT}-rank0.pt"
    _launch(1, config("one_rank", **{"checkpoint.load_path": str(checkpoint)}), tmp_path / "one_rank.log")

    reference, resumed = _global_ids(tmp_path / "two_ranks"), _global_ids(tmp_path / "one_rank")
    assert sorted(reference) == list(range(STEPS)) and sorted(resumed) == list(range(RESUME_AT, STEPS))
    for step in range(RESUME_AT, STEPS):
        assert len(reference[step]) == 8
        assert resumed[step] == reference[step], f"step {step}: {resumed[step]} vs {reference[step]}"
    ref_loss, res_loss = _losses(tmp_path / "two_ranks"), _losses(tmp_path / "one_rank")
    assert sorted(res_loss) == list(range(RESUME_AT, STEPS))
    for step in range(RESUME_AT, STEPS):
        assert math.isclose(res_loss[step], ref_loss[step], rel_tol=1e-5), (step, res_loss[step], ref_loss[step])
