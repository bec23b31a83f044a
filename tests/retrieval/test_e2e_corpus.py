"""End to end through the commands a user runs (issue 16): webdataset tars written by
``webdataset.TarWriter`` -> ``cm3leon data prepare --source webdataset`` -> ``cm3leon
retrieval build`` -> ``composer -n 2 -m cm3leon.retrieval.augment`` -> ``cm3leon train run``
for a few steps.  Only the CLIP encoder and the VQ-GAN are made through the API (random
weights, tiny), standing in for a user's converted or trained ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cm3leon.core.shards import iter_documents, iter_token_samples, verify_dataset
from cm3leon.core.train.logs import read_metrics, series
from tests.core._corpora import Sample, write_tars
from tests.core.train._helpers import subprocess_env, tiny_config, write_config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORDS = ["red", "blue", "green", "square", "circle", "small", "big", "left", "right", "dog", "cat", "tree"]

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.world_size(2)]


def _run(cmd: list[str], log: Path, timeout: float = 900) -> str:
    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=fh, timeout=timeout, check=False)  # fmt: skip
        fh.write(proc.stdout)
    assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]
    return proc.stdout.decode()


def test_webdataset_corpus_to_training(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from cm3leon.core.plugin_manager import get_registries

    samples = [Sample(f"{i:06d}", " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5)), (12, 10))
               for i in range(36)]
    write_tars(tmp_path / "tars", samples, per_shard=10)  # 4 shards: 10, 10, 10, 6 samples
    vq = tmp_path / "vq"
    get_registries().tokenizers.build("vqgan", "small_32", seed=0).save(vq)
    log = tmp_path / "commands.log"

    _run([str(BIN / "cm3leon"), "data", "prepare", str(tmp_path / "tars"), "--source", "webdataset",
          "--out", str(tmp_path / "docs")], log)  # fmt: skip
    assert verify_dataset(tmp_path / "docs").num_samples == 36

    config = tmp_path / "retrieval.yaml"
    config.write_text(yaml.safe_dump({
        "bank": {"output": str(tmp_path / "bank"), "data": {"shards": [str(tmp_path / "docs")]},
                 "encoder": str(tiny_encoder_dir), "device": "cpu"},
        "augment": {"output": str(tmp_path / "ra"), "data": {"shards": [str(tmp_path / "docs")]},
                    "bank": str(tmp_path / "bank"), "text_tokenizer": "bytes", "image_tokenizer": f"vqgan:{vq}",
                    "part_size": 5, "batch_size": 8, "device": "cpu"},
    }))  # fmt: skip
    bank = json.loads(_run([str(BIN / "cm3leon"), "retrieval", "build", str(config), "--no-progress"], log))
    assert bank["size"] == 36

    port = str(29400 + os.getpid() % 100)
    out = _run([str(BIN / "composer"), "-n", "2", "--master_port", port, "-m", "cm3leon.retrieval.augment",
                str(config)], log)  # fmt: skip
    report = json.JSONDecoder().raw_decode(out[out.index("{"):])[0]  # composer's launcher prints after it
    assert report["examples"] == 36 and report["world_size"] == 2
    assert [r["parts"] for r in report["ranks"]] == [4, 4] and report["retrieved_histogram"] == {"3": 36}
    queries = [d.id for d in iter_documents(tmp_path / "docs")]
    assert [s.id for s in iter_token_samples(tmp_path / "ra")] == queries and queries[0].endswith("/000000")

    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, {"ra": {"local": str(tmp_path / "ra"), "proportion": 1.0}}, max_duration="3ba",
                      **{"model.options": {"max_seq_len": 256, "d_model": 32, "d_ff": 64}, "data.seq_len": 256,
                         "data.global_batch_size": 4})  # fmt: skip
    _run([str(BIN / "cm3leon"), "train", "run", str(write_config(tmp_path / "train.yaml", cfg))], log)
    _, loss = series(read_metrics(run_dir / "metrics.jsonl"), "loss/train/total")
    assert len(loss) == 3 and all(v == v and v > 0 for v in loss)  # three finite steps
