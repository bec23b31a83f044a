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
the same JSON in its metadata, so a lone ``model.safetensors`` loads too, and the
SHA-256 of its tensors (:func:`tensors_sha256`: the tensor table of the header and the
data bytes) under ``cm3leon_tensors_sha256``: a lone file is checked against it, and one
without it (written before the digest existed, or by another tool) is refused unless
``allow_unverified=True``.  Every failure -- hash, truncation, a header that safetensors
cannot parse -- is an :class:`ExportError` naming the file.

This module needs only torch and safetensors (no Composer), so ``cm3leon-decoding`` can
depend on it with ``cm3leon-core`` alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
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
    "TENSORS_SHA256_KEY",
    "ExportError",
    "ExportedModel",
    "load_exported",
    "save_exported",
    "tensors_sha256",
]

EXPORT_FORMAT = "cm3leon-export"
EXPORT_VERSION = 1
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"
TENSORS_SHA256_KEY = "cm3leon_tensors_sha256"  # safetensors metadata: digest of the tensors
_MAX_HEADER_BYTES = 100 << 20  # safetensors' own cap on the JSON header


class ExportError(ValueError):
    """An export that cannot be trusted or read: hash mismatch, truncation, bad header (names the file)."""


def _read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and where its data starts, checked against the size."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise ExportError(f"{path}: truncated safetensors file ({size} bytes, no header length)")
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER_BYTES or 8 + length > size:
            raise ExportError(f"{path}: safetensors header length {length} exceeds the file ({size} bytes): truncated?")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: corrupt safetensors header (not valid JSON: {err})") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path}: corrupt safetensors header (not a JSON object)")
    return header, 8 + length


def tensors_sha256(path: str | Path) -> str:
    """SHA-256 of a safetensors file's tensors: its tensor table (names, dtypes, shapes,
    offsets; canonical JSON, ``__metadata__`` left out) followed by the data bytes.

    Independent of the metadata, so it can be stored in the metadata of the same file.
    """
    path = Path(path)
    header, start = _read_safetensors_header(path)
    table = {k: v for k, v in header.items() if k != "__metadata__"}
    digest = hashlib.sha256(json.dumps(table, sort_keys=True, separators=(",", ":")).encode())
    with path.open("rb") as fh:
        fh.seek(start)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def _write_weights(save_file: Any, tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str],
                   *, final: Path) -> None:
    """``safetensors.torch.save_file``, its I/O errors (a full disk) as ``OSError`` naming ``final``."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except Exception as err:  # SafetensorError("... I/O error: No space left on device (os error 28)")
        code = re.search(r"os error (\d+)", str(err))
        if code is None:
            raise
        raise OSError(int(code.group(1)), f"{final}: cannot write the safetensors weights: {err}") from err


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
    metadata = {"cm3leon": json.dumps(header, sort_keys=True)}
    with atomic_directory(out, overwrite=overwrite) as tmp:
        weights = tmp / EXPORT_WEIGHTS
        _write_weights(save_file, tensors, weights, metadata, final=out / EXPORT_WEIGHTS)
        # The digest covers the tensors only, so writing it into the metadata leaves it valid.
        metadata[TENSORS_SHA256_KEY] = tensors_sha256(weights)
        _write_weights(save_file, tensors, weights, metadata, final=out / EXPORT_WEIGHTS)
        header["weights_sha256"] = sha256_file(weights)
        (tmp / EXPORT_CONFIG).write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
    return out


def _read_export_dir(path: Path) -> tuple[Path, dict[str, Any]]:
    """Return ``(weights file, header)`` of an export directory, hash-checked against config.json."""
    if not is_complete(path):
        raise ExportError(f"{path}: export is incomplete (no COMPLETE marker)")
    weights, config_path = path / EXPORT_WEIGHTS, path / EXPORT_CONFIG
    for p in (weights, config_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing from the export")
    try:
        header = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{config_path}: not valid JSON: {err}") from None
    expected = header.get("weights_sha256") if isinstance(header, dict) else None
    if expected is None or sha256_file(weights) != expected:
        raise ExportError(f"{weights}: SHA-256 does not match {config_path} (corrupt or modified)")
    return weights, header


def _read_header(path: Path, *, allow_unverified: bool = False) -> tuple[Path, dict[str, Any]]:
    """Return ``(weights file, header)`` for an export directory or a lone safetensors file.

    Both paths check the tensor digest stored in the safetensors metadata when present (a
    directory's whole-file hash may have been re-recorded); a lone file must have one.
    """
    if path.is_dir():
        weights, header = _read_export_dir(path)
    elif path.is_file():
        weights, header = path, None
    else:
        raise FileNotFoundError(f"{path}: no such export directory or safetensors file")
    st_header, _ = _read_safetensors_header(weights)
    metadata = st_header.get("__metadata__") or {}
    recorded = metadata.get(TENSORS_SHA256_KEY) if isinstance(metadata, dict) else None
    if recorded is None and header is None and not allow_unverified:
        raise ExportError(
            f"{weights}: no {TENSORS_SHA256_KEY} in the safetensors metadata, so its tensors cannot be "
            "verified; load the export directory, re-export it, or pass allow_unverified=True"
        )
    if recorded is not None and tensors_sha256(weights) != recorded:
        raise ExportError(f"{weights}: SHA-256 of the tensors does not match {TENSORS_SHA256_KEY} (corrupt or modified)")
    if header is None:
        raw = metadata.get("cm3leon") if isinstance(metadata, dict) else None
        if raw is None:
            raise ExportError(f"{weights}: safetensors file without cm3leon metadata (not an export)")
        try:
            header = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ExportError(f"{weights}: corrupt cm3leon metadata (not valid JSON: {err})") from None
    return weights, header


def load_exported(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    allow_unverified: bool = False,
) -> ExportedModel:
    """Rebuild the transformer of an export (directory or ``model.safetensors``).

    Args:
        path: an export directory, or its ``model.safetensors`` alone.
        device / dtype: where and in which dtype to put the weights.
        allow_unverified: accept a lone safetensors file that carries no tensor digest
            (``cm3leon_tensors_sha256``), e.g. one written before the digest existed.

    Raises:
        ExportError (a ValueError): incomplete export, hash mismatch, a lone file without
            a digest, an unreadable safetensors file, unknown format, or weights that do
            not match the recorded architecture; each names the file (and the tensors).
        FileNotFoundError: ``path`` does not exist.
    """
    from safetensors.torch import load_file

    path = Path(path)
    weights, header = _read_header(path, allow_unverified=allow_unverified)
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: not a {EXPORT_FORMAT} export")
    if int(header.get("version", 0)) > EXPORT_VERSION:
        raise ExportError(f"{path}: export version {header['version']} is newer than this cm3leon reads")
    config = TransformerConfig.from_dict(header["transformer"], source=f"{path}: transformer")
    vocab = Vocabulary.from_dict(header["vocab"], source=f"{path}: vocab")
    with torch.device("meta"):
        model = CM3LeonTransformer(config)
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as err:  # SafetensorError (bad header, offsets, dtype) does not name the file
        raise ExportError(f"{weights}: cannot read the safetensors weights: {type(err).__name__}: {err}") from err
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ExportError(f"{weights}: weights do not match the architecture: missing {missing}, unexpected {unexpected}")
    model.load_state_dict(state, strict=True, assign=True)
    if dtype is not None:
        model = model.to(dtype)
    return ExportedModel(model=model.eval(), vocab=vocab, meta=dict(header.get("meta") or {}), path=path)
