"""Composer checkpoint -> safetensors export (:mod:`cm3leon.core.exported` format).

Reads only what :func:`cm3leon.core.train.composer_checkpoints.check_checkpoint` allows (no code
can run), takes the transformer weights (``state.model``, ``model.`` prefix removed) and
the architecture and vocabulary that :class:`~cm3leon.core.train.callbacks.RunInfo`
stored in the checkpoint, and writes an export directory that
:func:`cm3leon.core.exported.load_exported` (decoding, evaluation, SFT's
``model.init_from``) rebuilds without Composer.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from cm3leon.core.exported import save_exported
from cm3leon.core.model import TransformerConfig
from cm3leon.core.train.composer_checkpoints import (
    RUN_INFO_KEY,
    check_checkpoint,
    load_checkpoint_state,
)
from cm3leon.core.vocab import Vocabulary

__all__ = ["export_checkpoint", "read_checkpoint_state"]

MODEL_PREFIX = "model."


def read_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """The ``state`` dict of a Composer checkpoint (monolithic ``.pt`` or sharded directory), safely."""
    path = Path(path)
    if path.is_dir():
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        check_checkpoint(path)  # .metadata and every pickled item, before dcp reads them
        tmp = Path(tempfile.mkdtemp(prefix="cm3leon-export-"))
        try:
            dcp_to_torch_save(path, tmp / "consolidated.pt")
            full = load_checkpoint_state(tmp / "consolidated.pt")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        full = load_checkpoint_state(path)
    if not isinstance(full, dict) or not isinstance(full.get("state"), dict):
        raise ValueError(f"{path}: not a Composer checkpoint (no 'state' mapping)")
    return full["state"]


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the weights of a training checkpoint as a safetensors export directory.

    Args:
        checkpoint: a ``.pt`` checkpoint, ``latest-rank0.pt``, or a sharded checkpoint directory.
        out: export directory to create (atomically).
        overwrite: replace an existing export.

    Raises:
        UnsafeCheckpointError: the checkpoint holds objects outside the allowlist.
        ValueError: not a cm3leon training checkpoint (no run info or model weights).
    """
    checkpoint = Path(checkpoint)
    state = read_checkpoint_state(checkpoint)
    info = (state.get("callbacks") or {}).get(RUN_INFO_KEY)
    if not isinstance(info, dict) or "transformer" not in info or "vocab" not in info:
        raise ValueError(f"{checkpoint}: no {RUN_INFO_KEY} in the checkpoint (not written by `cm3leon train`)")
    config = TransformerConfig.from_dict(info["transformer"], source=f"{checkpoint}: RunInfo.transformer")
    vocab = Vocabulary.from_dict(info["vocab"], source=f"{checkpoint}: RunInfo.vocab")
    weights = {k[len(MODEL_PREFIX):]: v for k, v in (state.get("model") or {}).items() if k.startswith(MODEL_PREFIX)}
    if not weights:
        raise ValueError(f"{checkpoint}: no model weights under 'state.model'")
    timestamp = (state.get("timestamp") or {}).get("Timestamp", {})
    meta = {"source": str(checkpoint.resolve()), "run_name": info.get("run_name"),
            "batch": timestamp.get("batch"), "tokens": timestamp.get("token")}
    return save_exported(weights, out, vocab=vocab, config=config, meta=meta, overwrite=overwrite)
