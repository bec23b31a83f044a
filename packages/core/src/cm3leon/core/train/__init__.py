"""Composer trainer for CM3Leon pretraining and SFT (``pip install cm3leon-core[train]``).

Public API (imported lazily, so the config schema works without Composer)::

    from cm3leon.core.train import TrainConfig, train, export_checkpoint
    from cm3leon.core.config import load_config

    cfg = load_config(TrainConfig, "configs/pretrain/tiny.yaml", ["max_duration=50ba"])
    result = train(cfg)                                  # runs / resumes
    export_checkpoint(result.latest_checkpoint, "runs/tiny/export")   # safetensors

Modules: ``config`` (schema), ``composer_model`` (loss, metrics, FLOPs), ``metrics``,
``data`` (streams -> CM3 -> packed batches), ``builders``, ``checkpoint`` (safe loading,
atomic saving), ``callbacks`` (NaN guard, run info, speed monitor), ``logs`` (JSONL,
plots), ``export``, ``loop`` (``train``), ``cli`` (``cm3leon train``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CM3LeonComposerModel",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "UnsafeCheckpointError",
    "check_checkpoint",
    "export_checkpoint",
    "train",
]

_LAZY = {
    "CM3LeonComposerModel": "cm3leon.core.train.composer_model",
    "NonFiniteLossError": "cm3leon.core.train.callbacks",
    "TrainConfig": "cm3leon.core.train.config",
    "TrainResult": "cm3leon.core.train.loop",
    "UnsafeCheckpointError": "cm3leon.core.train.composer_checkpoints",
    "check_checkpoint": "cm3leon.core.train.composer_checkpoints",
    "export_checkpoint": "cm3leon.core.train.export",
    "train": "cm3leon.core.train.loop",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cm3leon.core.train' has no attribute {name!r}")
