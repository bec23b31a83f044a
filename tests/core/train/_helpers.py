"""Shared fixtures of the training tests: learnable token shards, tiny configs, subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cm3leon.core.shards import TokenShardWriter
from cm3leon.core.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable
COMPOSER = str(Path(sys.executable).with_name("composer"))
VOCAB = Vocabulary(text_size=64, image_size=32)
IMAGE_TOKENS = 16


def pair_tokens(a: int, b: int, vocab: Vocabulary = VOCAB) -> np.ndarray:
    """A Figure-8 caption-image pair whose image is a deterministic function of the caption.

    ``<eos> t(a) t(b) t(a+b) <break> img_0 ... img_15 <break>`` with
    ``img_i = (3a + i(b+1)) mod 32``: a model can learn the image from the caption, so the
    loss of a short run falls well below the uniform ``log V``.
    """
    text = vocab.text_to_global([10 + a, 20 + b, 30 + (a + b) % 8])
    image = vocab.image_to_global([(3 * a + i * (b + 1)) % vocab.image_size for i in range(IMAGE_TOKENS)])
    return np.concatenate([[vocab.eos_id], text, [vocab.break_id], image, [vocab.break_id]])


def write_token_dataset(out: Path, n: int, *, seed: int = 0, retrieved: int = 0,
                        nan_weight_ids: Sequence[int] = (), vocab: Vocabulary = VOCAB) -> Path:
    """Token shards of ``n`` examples (``retrieved`` extra pairs before each query, Figure 9).

    ``nan_weight_ids``: samples whose ``loss_weights`` are NaN (the NaN-policy tests).
    """
    rng = np.random.default_rng(seed)
    with_weights = bool(nan_weight_ids)
    with TokenShardWriter(out, vocab, with_loss_weights=with_weights, size_limit=1 << 13) as writer:
        for i in range(n):
            a, b = (int(x) for x in rng.integers(0, 8, size=2))
            parts = [pair_tokens(int(x), int(y))[1:] for x, y in rng.integers(0, 8, size=(retrieved, 2))]
            query = pair_tokens(a, b)[1:]
            tokens = np.concatenate([[vocab.eos_id], *parts, query]) if parts else pair_tokens(a, b)
            weights = None
            if with_weights:
                weights = np.full(tokens.size, np.nan if i in nan_weight_ids else 1.0, np.float32)
            writer.write(tokens, id=f"ex{i}", loss_weights=weights)
    return out


def tiny_config(run_dir: Path, streams: dict[str, dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A CPU config of cm3leon_tiny on 64-token rows (dotted ``overrides`` applied)."""
    cfg: dict[str, Any] = {
        "run_name": "test",
        "run_dir": str(run_dir),
        "seed": 3,
        "model": {"name": "cm3leon_tiny", "options": {"max_seq_len": 64, "d_model": 32, "d_ff": 64}},
        "data": {"streams": streams, "seq_len": 64, "global_batch_size": 8, "shuffle": True},
        "optim": {"lr": 3.0e-3, "weight_decay": 0.01},
        "scheduler": {"name": "linear", "warmup": "2ba", "alpha_f": 0.1},
        "max_duration": "8ba",
        "device": "cpu",
        "precision": "fp32",
        "checkpoint": {"save_interval": "2ba"},
        "logging": {"progress_bar": False, "console_interval": "100ba", "plot": False, "log_level": "WARNING"},
    }
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text("# test config: cm3leon train " + str(path) + "\n" + yaml.safe_dump(cfg))
    return path


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment of a training subprocess: one thread per process, repo importable."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.pop("CHECKPOINT_VALIDATION_FUNCTION", None)
    env.update(extra)
    return env


def train_cmd(config: Path, *overrides: str) -> list[str]:
    return [PYTHON, "-m", "cm3leon.core.train", str(config), *overrides]


def run(cmd: list[str], log: Path, *, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    with open(log, "ab") as fh:
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO,
                              env=env or subprocess_env(), check=False)


def launch_ranks(n: int, script: str, config: Path, log: Path, *overrides: str,
                 port_offset: int = 0, **env: str) -> subprocess.Popen:
    """``composer -n N SCRIPT CONFIG OVERRIDES`` on gloo over loopback, in its own session
    (so a test can SIGKILL the whole group); ``env``: extra environment variables."""
    port = str(29500 + (os.getpid() + 97 * port_offset) % 1000)
    cmd = [COMPOSER, "-n", str(n), "--master_port", port, script, str(config), *overrides]
    return subprocess.Popen(cmd, cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=subprocess_env(MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", **env))
