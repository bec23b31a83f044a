"""``composer -n 2``: two real ranks build the same bank as one (each reading only its own
shard files), and train the small CLIP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.shards import DocumentShardWriter
from cm3leon.retrieval.bank import MemoryBank
from tests.retrieval.synthetic import shape_documents

REPO = Path(__file__).resolve().parents[2]
COMPOSER = str(Path(sys.executable).with_name("composer"))

pytestmark = [pytest.mark.integration, pytest.mark.world_size(2), pytest.mark.slow]

CONFIG = """\
# composer -n 2 -m cm3leon.retrieval.build {path}
bank:
  output: {out}
  data: {{shards: [{docs}]}}
  encoder: {encoder}
  chunk_size: 25
  index: {{factory: "{factory}", train_size: 200}}
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    return env


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat"])
def test_two_ranks_under_the_composer_launcher(tmp_path: Path, tiny_encoder_dir: Path, factory: str) -> None:
    docs = shape_documents(130, seed=51)
    with DocumentShardWriter(tmp_path / "docs", size_limit=8000) as w:  # several shard files
        for d in docs:
            w.write(d)
    all_files = sorted(str(p) for p in (tmp_path / "docs").glob("*.mds"))
    assert len(all_files) >= 4
    outputs = {}
    for world in (1, 2):
        out = tmp_path / f"bank{world}"
        cfg = tmp_path / f"bank{world}.yaml"
        cfg.write_text(CONFIG.format(path=cfg, out=out, docs=tmp_path / "docs", encoder=tiny_encoder_dir,
                                     factory=factory))
        if world == 1:
            cmd = [sys.executable, "-m", "cm3leon.retrieval.build", str(cfg)]
        else:
            port = str(29600 + os.getpid() % 1000)
            cmd = [COMPOSER, "-n", "2", "--master_port", port, "--stdout", str(tmp_path / "rank{rank}.out"),
                   "--stderr", str(tmp_path / "rank{rank}.err"), "-m", "cm3leon.retrieval.build", str(cfg)]
        log = tmp_path / f"launch{world}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
        outputs[world] = MemoryBank.load(out)
    one, two = outputs[1], outputs[2]
    assert two.manifest.extra["world_size"] == 2 and one.manifest.extra["world_size"] == 1
    assert one.ids == two.ids == [d.id for d in docs]
    np.testing.assert_allclose(one.vectors(np.arange(130)), two.vectors(np.arange(130)), atol=1e-5)
    q = one.vectors(np.arange(0, 130, 7))
    np.testing.assert_array_equal(one.search(q, 5)[1], two.search(q, 5)[1])
    assert not (tmp_path / "bank2.work").exists()
    assert two.documents(range(130)) == docs  # fetched by reference from the shards
    # Each rank logged the shard files it opened: disjoint, together all of them. Composer pipes
    # local rank 0 through the launcher's output and writes rank 1's to rank1.err.
    text = (tmp_path / "launch2.log").read_text() + (tmp_path / "rank1.err").read_text()
    read: dict[int, list[str]] = {0: [], 1: []}
    for rank, path in re.findall(r"rank (\d+) reads (\S+\.mds)", text):
        read[int(rank)].append(path)
    assert read[0] and read[1], read
    assert sorted(read[0] + read[1]) == all_files
    assert "bank estimate: 130 documents x 32 dims" in (tmp_path / "launch2.log").read_text()


TRAIN_CONFIG = """\
# composer -n 2 -m cm3leon.retrieval.train_clip {path}
train_clip:
  output: {out}
  data: {{shards: [{docs}]}}
  model_overrides:
    embed_dim: 32
    vision_cfg: {{layers: 1, width: 32, head_width: 16, patch_size: 8}}
    text_cfg: {{width: 32, heads: 2, layers: 1, context_length: 24}}
  eval_size: 40
  batch_size: 16
  max_duration: 4ba
  warmup: 1ba
  save_interval: 2ba
"""


def test_clip_trains_on_two_ranks(tmp_path: Path) -> None:
    with DocumentShardWriter(tmp_path / "docs") as w:
        for d in shape_documents(200, seed=52):
            w.write(d)
    cfg = tmp_path / "clip.yaml"
    cfg.write_text(TRAIN_CONFIG.format(path=cfg, out=tmp_path / "clip", docs=tmp_path / "docs"))
    port = str(29700 + os.getpid() % 1000)
    cmd = [COMPOSER, "-n", "2", "--master_port", port, "-m", "cm3leon.retrieval.train_clip", str(cfg)]
    log = tmp_path / "launch.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            assert proc.wait(timeout=900) == 0, log.read_text()[-4000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp_path / "clip" / "encoder" / "COMPLETE").is_file()
    assert (tmp_path / "clip" / "checkpoints" / "ep0-ba4-rank0.pt").is_file()
    metrics = json.loads((tmp_path / "clip" / "metrics.json").read_text())
    # 2 ranks x 16 per batch: the training set (160 documents) is split across the ranks.
    assert metrics["train_documents"] == 160 and "recall@1" in metrics["eval"]
