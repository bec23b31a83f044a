"""Object stores end to end: ``s3://`` data, checkpoints saved to and resumed from ``s3://``,
against a real S3-compatible server on loopback (moto's server mode, ``_s3server.py``).

Fast (default suite): a corrupted remote shard named before step 1 (size and hash
checks), the upload/download round trip of checkpoints and its commit rule, the
checkpoint guard on downloaded checkpoints.  Slow: training on ``s3://`` data with
``s3://`` checkpoints, killed, resumed on an empty machine (autoresume) and from an
explicit ``s3://`` ``load_path``, bitwise equal to the uninterrupted run; the secret key
appears in no file written or uploaded.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from composer.core import Callback, State
from composer.loggers import Logger

from cm3leon.core.config import load_config
from cm3leon.core.shards import ShardIntegrityError, read_manifest
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.composer_checkpoints import UnsafeCheckpointError
from cm3leon.core.train.logs import read_metrics
from cm3leon.core.train.object_store import LATEST_POINTER, RemoteFolder, pull_newest_checkpoint
from tests.core.train import _s3server as s3server
from tests.core.train._helpers import tiny_config

STEPS = 12


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3server.moto_s3() as url:
        yield url


@pytest.fixture
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, and the environment (endpoint, dummy credentials) pointing at it."""
    for key, value in s3server.s3_env(endpoint).items():
        monkeypatch.setenv(key, value)
    name = f"cm3leon-{uuid.uuid4().hex[:12]}"
    s3server.client(endpoint).create_bucket(Bucket=name)
    return name


def _shard_names(data: Path) -> list[str]:
    return sorted(n for n in read_manifest(data)["files"] if n.endswith(".mds"))


def _remote_config(run_dir: Path, bucket: str, **overrides: object) -> dict:
    streams = {"ra": {"remote": f"s3://{bucket}/shards"}}
    return tiny_config(run_dir, streams, max_duration=f"{STEPS}ba",
                       **{"checkpoint.save_interval": "2ba", **overrides})


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["batch"]: r["loss/train/total"] for r in read_metrics(run_dir / "metrics.jsonl")
            if "loss/train/total" in r}


# ------------------------------------------------------------------ corrupted remote shard
@pytest.mark.parametrize("mode", ["size", "full"])
def test_corrupted_remote_shard_is_named_before_step_1(tmp_path: Path, token_data: Path, endpoint: str,
                                                       bucket: str, mode: str) -> None:
    s3 = s3server.client(endpoint)
    s3server.upload_dir(s3, bucket, "shards", token_data)
    victim = _shard_names(token_data)[1]
    body = (token_data / victim).read_bytes()
    # `size` must catch a truncated shard (HEAD); `full` a same-size flipped byte (SHA-256).
    bad = body[:-7] if mode == "size" else body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
    s3.put_object(Bucket=bucket, Key=f"shards/{victim}", Body=bad)
    run_dir = tmp_path / "run"
    cfg = load_config(TrainConfig, data=_remote_config(run_dir, bucket, **{"data.verify_remote": mode}))
    with pytest.raises(ShardIntegrityError) as err:
        train(cfg)
    assert f"s3://{bucket}/shards/{victim}" in str(err.value)
    assert ("truncated" if mode == "size" else "SHA-256 mismatch") in str(err.value)
    assert not _losses(run_dir) if (run_dir / "metrics.jsonl").exists() else True  # no step ran
    assert not (run_dir / "cache" / "train" / "ra" / victim).exists()  # nothing bad left in the cache


def test_verify_remote_none_leaves_the_check_to_streaming(tmp_path: Path, token_data: Path, endpoint: str,
                                                          bucket: str) -> None:
    from cm3leon.core.shard_datasets import stage_dataset

    s3 = s3server.client(endpoint)
    s3server.upload_dir(s3, bucket, "shards", token_data)
    victim = _shard_names(token_data)[0]
    s3.put_object(Bucket=bucket, Key=f"shards/{victim}", Body=b"short")
    info = stage_dataset(f"s3://{bucket}/shards", tmp_path / "none", verify_remote="none")
    assert info.num_samples == 64  # metadata verified, shards not looked at
    with pytest.raises(ShardIntegrityError, match=victim):
        stage_dataset(f"s3://{bucket}/shards", tmp_path / "size", verify_remote="size")


# ------------------------------------------------------------------ checkpoint round trip
def test_checkpoint_upload_download_round_trip(tmp_path: Path, bucket: str, endpoint: str) -> None:
    local = tmp_path / "staging"
    local.mkdir()
    uri = f"s3://{bucket}/run/checkpoints"
    remote = RemoteFolder(uri)
    for batch in (2, 4):
        path = local / f"ep0-ba{batch}-rank0.pt"
        torch.save({"batch": batch}, path)
        remote.upload_checkpoint(path)
    # an uploaded sharded directory without its .metadata (a killed upload) is not committed
    partial = local / "ep0-ba6"
    partial.mkdir()
    (partial / "__0_0.distcp").write_bytes(b"x" * 10)
    remote.upload(f"{partial.name}/__0_0.distcp", partial / "__0_0.distcp")
    assert remote.committed() == {2: "ep0-ba2-rank0.pt", 4: "ep0-ba4-rank0.pt"}
    s3 = s3server.client(endpoint)
    pointer = s3.get_object(Bucket=bucket, Key=f"run/checkpoints/{LATEST_POINTER}")["Body"].read()
    assert pointer.decode() == "run/checkpoints/ep0-ba4-rank0.pt"

    fresh = tmp_path / "fresh"
    pulled = pull_newest_checkpoint(uri, fresh)
    assert pulled == fresh / "ep0-ba4-rank0.pt"
    assert torch.load(pulled, weights_only=True) == {"batch": 4}
    assert sorted(p.name for p in fresh.iterdir()) == ["ep0-ba4-rank0.pt"]  # no partial left
    # a sharded checkpoint is committed by its .metadata, uploaded last
    (partial / ".metadata").write_bytes(b"m")
    remote.upload_checkpoint(partial)
    assert max(remote.committed()) == 6
    keys = [k for k in s3server.all_objects(s3, bucket) if k.startswith("run/checkpoints/ep0-ba6/")]
    assert sorted(keys) == ["run/checkpoints/ep0-ba6/.metadata", "run/checkpoints/ep0-ba6/__0_0.distcp"]
    assert pull_newest_checkpoint(uri, fresh) == fresh / "ep0-ba6"
    assert (fresh / "ep0-ba6" / ".metadata").read_bytes() == b"m"
    assert pull_newest_checkpoint(f"s3://{bucket}/empty", tmp_path / "none") is None


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.getcwd, ())  # harmless here, but a global no checkpoint may contain


def _evil_checkpoint(path: Path) -> Path:
    torch.save({"state": {"model": {}}, "evil": _Evil()}, path)
    return path


@pytest.mark.parametrize("how", ["autoresume", "load_path"])
def test_checkpoint_guard_checks_downloaded_checkpoints(tmp_path: Path, token_data: Path, endpoint: str,
                                                         bucket: str, how: str) -> None:
    s3 = s3server.client(endpoint)
    evil = _evil_checkpoint(tmp_path / "ep0-ba2-rank0.pt")
    s3.upload_file(str(evil), bucket, "run/checkpoints/ep0-ba2-rank0.pt")
    overrides: dict[str, object] = {"data.streams": {"ra": {"local": str(token_data)}}}
    if how == "autoresume":
        overrides["checkpoint.save_folder"] = f"s3://{bucket}/run/checkpoints"
    else:
        overrides["checkpoint.load_path"] = f"s3://{bucket}/run/checkpoints/ep0-ba2-rank0.pt"
    cfg = load_config(TrainConfig, data=_remote_config(tmp_path / "run", bucket, **overrides))
    with pytest.raises(UnsafeCheckpointError, match="refusing to load this checkpoint"):
        train(cfg)


# ------------------------------------------------------------------ end to end
class _CrashAt(Callback):
    def __init__(self, n: int) -> None:
        self.n = n

    def batch_end(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) == self.n:
            raise KeyboardInterrupt(f"simulated crash after batch {self.n}")


def _train_1thread(cfg: TrainConfig, **kwargs: object) -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg, **kwargs)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(threads)


def _files_containing(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


@pytest.mark.slow
def test_train_on_s3_save_kill_resume_and_load_path(tmp_path: Path, token_data: Path, endpoint: str,
                                                     bucket: str) -> None:
    s3 = s3server.client(endpoint)
    s3server.upload_dir(s3, bucket, "shards", token_data)
    save = f"s3://{bucket}/run/checkpoints"
    reference = tmp_path / "reference"
    _train_1thread(load_config(TrainConfig, data=_remote_config(reference, bucket)))
    expected = _losses(reference)
    assert sorted(expected) == list(range(STEPS))

    run_dir = tmp_path / "run"
    cfg = load_config(TrainConfig, data=_remote_config(run_dir, bucket, **{"checkpoint.save_folder": save}))
    with pytest.raises(KeyboardInterrupt):
        _train_1thread(cfg, extra_callbacks=[_CrashAt(5)])
    uploaded = s3server.all_objects(s3, bucket)
    assert {"run/checkpoints/ep0-ba2-rank0.pt", "run/checkpoints/ep0-ba4-rank0.pt"} <= set(uploaded)
    assert uploaded[f"run/checkpoints/{LATEST_POINTER}"] == b"run/checkpoints/ep0-ba4-rank0.pt"
    shutil.rmtree(run_dir)  # a fresh machine: only the object store remains
    result = _train_1thread(cfg)  # the same command: autoresume from s3://
    assert result.batches == STEPS  # type: ignore[attr-defined]
    assert _losses(run_dir) == {b: v for b, v in expected.items() if b >= 4}  # bitwise
    assert f"run/checkpoints/ep1-ba{STEPS}-rank0.pt" in s3server.all_objects(s3, bucket)

    loaded = tmp_path / "loaded"
    cfg = load_config(TrainConfig, data=_remote_config(
        loaded, bucket, **{"checkpoint.load_path": f"{save}/ep0-ba4-rank0.pt"}))
    _train_1thread(cfg)
    assert _losses(loaded) == {b: v for b, v in expected.items() if b >= 4}

    secret = s3server.SECRET_KEY.encode()
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == s3server.SECRET_KEY
    assert _files_containing(tmp_path, secret) == []
    assert [k for k, body in s3server.all_objects(s3, bucket).items() if secret in body] == []
