"""A code-running pickle payload is refused wherever it sits in a checkpoint (reliability test 24).

The payload goes (a) into the model state, (b) into the RNG state, (c) nested inside a
``torch.storage._load_from_bytes`` call (a second, inner ``torch.save`` blob), and every
load path -- the checker autoresume uses, Composer's own ``safe_torch_load`` (its
``load_path``), the safetensors export -- must refuse it without running it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch

from cm3leon.core.train import UnsafeCheckpointError, check_checkpoint, export_checkpoint
from cm3leon.core.train.composer_checkpoints import install_checkpoint_guard


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


class _Nested:
    """Unpickles through ``torch.storage._load_from_bytes`` (a ``torch.load`` of its own)."""

    def __init__(self, marker: Path) -> None:
        buffer = io.BytesIO()
        torch.save(_Payload(marker), buffer)
        self.blob = buffer.getvalue()

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.blob,))


def _state(where: str, marker: Path) -> dict[str, Any]:
    model: dict[str, Any] = {"model.tok_emb.weight": torch.zeros(2, 2)}
    state: dict[str, Any] = {"state": {"model": model, "run_name": "x"}, "rng": [{"torch": torch.get_rng_state()}]}
    if where == "model":
        model["model.evil"] = _Payload(marker)
    elif where == "rng":
        state["rng"][0]["python"] = _Payload(marker)
    else:
        state["state"]["integrations"] = {"nested": _Nested(marker)}
    return state


WHERE = ["model", "rng", "nested-load-from-bytes"]


@pytest.mark.parametrize("where", WHERE)
def test_the_crafted_file_really_runs_code_when_loaded_unsafely(tmp_path: Path, where: str) -> None:
    """Control: each crafted file is malicious, so the refusals below mean something."""
    marker = tmp_path / "marker"
    torch.save(_state(where, marker), tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)  # harmless here: it writes the marker
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("where", WHERE)
def test_every_load_path_refuses_the_payload(tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from composer.utils.checkpoint import safe_torch_load

    marker = tmp_path / "marker"
    ckpt = tmp_path / "evil.pt"
    torch.save(_state(where, marker), ckpt)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt: refusing to load"):
        check_checkpoint(ckpt)  # what autoresume and `cm3leon train check` run first
    monkeypatch.delenv("CHECKPOINT_VALIDATION_FUNCTION", raising=False)
    install_checkpoint_guard()
    with pytest.raises(UnsafeCheckpointError):
        safe_torch_load(str(ckpt))  # Composer's load_path
    with pytest.raises(UnsafeCheckpointError):
        export_checkpoint(ckpt, tmp_path / "export")
    assert not marker.exists() and not (tmp_path / "export").exists()
