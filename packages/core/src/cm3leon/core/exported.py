"""Exported model weights: a safetensors file plus the architecture and vocabulary.

The hand-off from training to decoding and evaluation.  ``cm3leon train export`` (or
:func:`save_exported`) writes a directory, atomically (``COMPLETE`` written last)::

    export/
      model.safetensors   the transformer's weights (tied embedding stored once)
      config.json         {"format", "version", "transformer": TransformerConfig,
                           "vocab": Vocabulary, "weights_sha256", "meta": {...}}
      COMPLETE

:func:`load_exported` reads it back without unpickling anything: safetensors holds raw
tensors only and ``config.json`` is JSON.  The SHA-256 of the weights is checked, the
architecture is rebuilt from ``config.json`` and the weights are loaded strictly (a
missing or unexpected tensor is an error naming it).  The safetensors file also carries
the same JSON in its metadata, so a lone ``model.safetensors`` loads too.

This module needs only torch and safetensors (no Composer), so ``cm3leon-decoding`` can
depend on it with ``cm3leon-core`` alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cm3leon.core.io import atomic_directory, is_complete, sha256_file
from cm3leon.core.model import CM3LeonTransformer, TransformerConfig
from cm3leon.core.vocab import Vocabulary

__all__ = [
    "EXPORT_CONFIG",
    "EXPORT_FORMAT",
    "EXPORT_WEIGHTS",
    "ExportedModel",
    "load_exported",
    "save_exported",
]

EXPORT_FORMAT = "cm3leon-export"
EXPORT_VERSION = 1
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"


@dataclass
class ExportedModel:
    """What :func:`load_exported` returns."""

    model: CM3LeonTransformer
    vocab: Vocabulary
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _header(config: TransformerConfig, vocab: Vocabulary, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "transformer": config.to_dict(),
        "vocab": vocab.to_dict(),
        "meta": meta,
    }


def save_exported(
    model: CM3LeonTransformer | dict[str, torch.Tensor],
    out: str | Path,
    *,
    vocab: Vocabulary,
    config: TransformerConfig | None = None,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` (or its state dict with ``config``) as an export directory.

    Args:
        model: the transformer, or a state dict of one (then ``config`` is required).
        out: directory to create.
        vocab: the vocabulary the model was trained on (``vocab.size == vocab_size``).
        config: the architecture, when ``model`` is a state dict.
        meta: JSON-serialisable provenance (source checkpoint, step, run name).
        overwrite: replace an existing export.

    Returns:
        ``out``.

    Raises:
        ValueError: vocabulary and architecture disagree, or a state dict without config.
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    from safetensors.torch import save_file

    if isinstance(model, CM3LeonTransformer):
        config = model.config
        state = model.state_dict()
    else:
        if config is None:
            raise ValueError("save_exported: a state dict needs its TransformerConfig (config=...)")
        state = dict(model)
    if config.vocab_size != vocab.size:
        raise ValueError(f"save_exported: vocab_size {config.vocab_size} != vocabulary size {vocab.size}")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    header = _header(config, vocab, dict(meta or {}))
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        weights = tmp / EXPORT_WEIGHTS
        save_file(tensors, str(weights), metadata={"cm3leon": json.dumps(header, sort_keys=True)})
        header["weights_sha256"] = sha256_file(weights)
        (tmp / EXPORT_CONFIG).write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
    return out


def _read_header(path: Path) -> tuple[Path, dict[str, Any]]:
    """Return ``(weights file, header)`` for an export directory or a lone safetensors file."""
    from safetensors import safe_open

    if path.is_dir():
        if not is_complete(path):
            raise ValueError(f"{path}: export is incomplete (no COMPLETE marker)")
        weights, config_path = path / EXPORT_WEIGHTS, path / EXPORT_CONFIG
        for p in (weights, config_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: missing from the export")
        try:
            header = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{config_path}: not valid JSON: {err}") from None
        expected = header.get("weights_sha256") if isinstance(header, dict) else None
        if expected is None or sha256_file(weights) != expected:
            raise ValueError(f"{weights}: SHA-256 does not match {config_path} (corrupt or modified)")
        return weights, header
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such export directory or safetensors file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("cm3leon")
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise ValueError(f"{path}: not a safetensors file: {err}") from None
    if raw is None:
        raise ValueError(f"{path}: safetensors file without cm3leon metadata (not an export)")
    return path, json.loads(raw)


def load_exported(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> ExportedModel:
    """Rebuild the transformer of an export (directory or ``model.safetensors``).

    Raises:
        ValueError: incomplete export, hash mismatch, unknown format, or weights that do
            not match the recorded architecture (names the tensors).
        FileNotFoundError: ``path`` does not exist.
    """
    from safetensors.torch import load_file

    path = Path(path)
    weights, header = _read_header(path)
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path}: not a {EXPORT_FORMAT} export")
    if int(header.get("version", 0)) > EXPORT_VERSION:
        raise ValueError(f"{path}: export version {header['version']} is newer than this cm3leon reads")
    config = TransformerConfig.from_dict(header["transformer"], source=f"{path}: transformer")
    vocab = Vocabulary.from_dict(header["vocab"], source=f"{path}: vocab")
    with torch.device("meta"):
        model = CM3LeonTransformer(config)
    state = load_file(str(weights), device=str(device))
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not match the architecture: missing {missing}, unexpected {unexpected}")
    model.load_state_dict(state, strict=True, assign=True)
    if dtype is not None:
        model = model.to(dtype)
    return ExportedModel(model=model.eval(), vocab=vocab, meta=dict(header.get("meta") or {}), path=path)
