"""Checkpoint safety (no code runs on load), atomic saves, and the safetensors export."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cm3leon.core.config import load_config
from cm3leon.core.exported import load_exported
from cm3leon.core.train import (
    TrainConfig,
    UnsafeCheckpointError,
    check_checkpoint,
    export_checkpoint,
)
from cm3leon.core.train.composer_checkpoints import (
    install_checkpoint_guard,
    load_checkpoint_state,
    validate_checkpoint,
)
from tests.core.train._helpers import tiny_config


class _Payload:
    """Unpickling this runs ``exec`` of a line that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    state = {"state": {"model": {"model.tok_emb.weight": torch.zeros(2, 2)}, "run_name": "x",
                       "integrations": {"evil": _Payload(marker)}}, "rng": []}
    torch.save(state, path)
    return path


def test_crafted_checkpoint_really_runs_code_when_unpickled_unsafely(tmp_path: Path) -> None:
    """Control: the crafted file is malicious (so the refusals below are meaningful)."""
    marker = tmp_path / "marker"
    ckpt = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    code = f"import torch; torch.load({str(ckpt)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert marker.read_text() == "code ran"


def test_check_refuses_crafted_checkpoint_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    ckpt = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt: refusing to load.*refused global exec"):
        check_checkpoint(ckpt)
    assert not marker.exists()


def test_composer_load_path_is_guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Composer 0.32.1 itself calls torch.load(weights_only=False); the hook refuses first."""
    from composer.utils.checkpoint import safe_torch_load

    monkeypatch.delenv("CHECKPOINT_VALIDATION_FUNCTION", raising=False)
    install_checkpoint_guard()
    marker = tmp_path / "marker"
    ckpt = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match="refused global exec"):
        safe_torch_load(str(ckpt))
    assert not marker.exists()


def test_autoresume_refuses_crafted_latest_before_training(tmp_path: Path, token_data: Path) -> None:
    from cm3leon.core.train import train

    marker = tmp_path / "marker"
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", {"ra": {"local": str(token_data)}}))
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    _malicious_checkpoint(folder / "ep0-ba2-rank0.pt", marker)
    os.symlink("ep0-ba2-rank0.pt", folder / "latest-rank0.pt")
    with pytest.raises(UnsafeCheckpointError, match="ep0-ba2-rank0.pt"):
        train(cfg)
    assert not marker.exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # failed before step 1


def test_sharded_checkpoint_metadata_and_byte_items_are_checked(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from composer.utils.checkpoint import FileSystemReaderWithValidation

    marker = tmp_path / "marker"
    good = tmp_path / "good"
    dcp.save({"state": {"model": {"w": torch.ones(3)}, "run_name": "x"}}, checkpoint_id=str(good), no_dist=True)
    check_checkpoint(good)  # tensors + a pickled str: fine

    bad_item = tmp_path / "bad_item"
    dcp.save({"state": {"model": {"w": torch.ones(3)}, "evil": _Payload(marker)}},
             checkpoint_id=str(bad_item), no_dist=True)
    with pytest.raises(UnsafeCheckpointError, match="refused global exec"):
        check_checkpoint(bad_item)

    bad_meta = tmp_path / "bad_meta"
    bad_meta.mkdir()
    (bad_meta / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    install_checkpoint_guard()
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata.*refused global builtins.exec"):
        FileSystemReaderWithValidation(str(bad_meta)).read_metadata()  # what Composer calls
    assert not marker.exists()


def test_real_checkpoints_pass_the_allowlist(trained_run) -> None:
    _, result = trained_run
    assert validate_checkpoint(result.latest_checkpoint) is True
    state = load_checkpoint_state(result.latest_checkpoint)["state"]
    assert state["timestamp"]["Timestamp"]["batch"] == 8
    assert state["callbacks"]["RunInfo"]["vocab"]["text_size"] == 64


def test_latest_is_an_atomic_symlink_to_the_newest_complete_checkpoint(trained_run) -> None:
    cfg, result = trained_run
    folder = Path(cfg.run_dir) / "checkpoints"
    latest = folder / "latest-rank0.pt"
    assert latest.is_symlink() and os.readlink(latest) == "ep0-ba8-rank0.pt"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ep0-ba2-rank0.pt", "ep0-ba4-rank0.pt", "ep0-ba6-rank0.pt", "ep0-ba8-rank0.pt", "latest-rank0.pt"]


def test_crash_during_save_leaves_no_file_under_its_final_name(tmp_path: Path, token_data: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import composer.utils.checkpoint as cc

    from cm3leon.core.train import train

    real_write = cc._write_checkpoint_file
    calls = {"n": 0}

    def crashing_write(state_dict, filename):  # the 2nd save dies halfway through the file
        calls["n"] += 1
        if calls["n"] == 2:
            Path(filename).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt("simulated crash during save")
        real_write(state_dict, filename)

    monkeypatch.setattr(cc, "_write_checkpoint_file", crashing_write)
    run = tmp_path / "run"
    cfg = load_config(TrainConfig, data=tiny_config(run, {"ra": {"local": str(token_data)}},
                                                   max_duration="6ba"))
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    folder = run / "checkpoints"
    assert not (folder / "ep0-ba4-rank0.pt").exists()
    assert os.readlink(folder / "latest-rank0.pt") == "ep0-ba2-rank0.pt"
    assert [p.name for p in folder.glob(".partial-*")] == [".partial-ba4"]  # the torn save, hidden
    check_checkpoint(folder / "latest-rank0.pt")

    monkeypatch.setattr(cc, "_write_checkpoint_file", real_write)
    result = train(cfg)  # autoresume from ba2, finishes, cleans the leftover
    assert result.batches == 6
    assert not list(folder.glob(".partial-*"))
    assert os.readlink(folder / "latest-rank0.pt") == "ep0-ba6-rank0.pt"


def test_export_round_trip_gives_identical_logits(trained_run, tmp_path: Path) -> None:
    from cm3leon.core.train.composer_checkpoints import load_checkpoint_state
    from tests.core.train._helpers import VOCAB, pair_tokens

    _, result = trained_run
    out = export_checkpoint(result.latest_checkpoint, tmp_path / "export")
    exported = load_exported(out)
    assert exported.vocab == VOCAB and exported.meta["batch"] == 8
    weights = load_checkpoint_state(result.latest_checkpoint)["state"]["model"]
    ids = torch.as_tensor(pair_tokens(1, 2))[None]
    reference = exported.model.__class__(exported.model.config)
    reference.load_state_dict({k.removeprefix("model."): v for k, v in weights.items()})
    torch.testing.assert_close(exported.model(ids), reference.eval()(ids), rtol=0, atol=0)
    # tampering with the weights is caught by the recorded hash
    blob = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ValueError, match="SHA-256"):
        load_exported(out)


def test_export_refuses_unsafe_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeCheckpointError):
        export_checkpoint(_malicious_checkpoint(tmp_path / "evil.pt", marker), tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
