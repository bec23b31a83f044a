"""Safetensors exports: every load path hash-checks the tensors and names the file on failure."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from cm3leon.core.exported import (
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    TENSORS_SHA256_KEY,
    ExportError,
    load_exported,
    save_exported,
    tensors_sha256,
)
from cm3leon.core.io import sha256_file
from cm3leon.core.model import CM3LeonTransformer, TransformerConfig
from cm3leon.core.vocab import Vocabulary

VOCAB = Vocabulary(text_size=32, image_size=16, num_sentinels=2)
CONFIG = TransformerConfig(vocab_size=VOCAB.size, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=16)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_exported(CM3LeonTransformer(CONFIG), tmp_path / "export", vocab=VOCAB, meta={"step": 3})


def _split(path: Path) -> tuple[dict, bytes]:
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _join(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _flip_data_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x40  # inside the last tensor's data, far from the header
    path.write_bytes(bytes(blob))


def _rerecord(export: Path) -> None:
    """What a careless edit (or an attacker) does: make config.json agree with the new bytes."""
    config = json.loads((export / EXPORT_CONFIG).read_text())
    config["weights_sha256"] = sha256_file(export / EXPORT_WEIGHTS)
    (export / EXPORT_CONFIG).write_text(json.dumps(config))


def test_lone_safetensors_round_trips_and_carries_its_digest(export: Path) -> None:
    weights = export / EXPORT_WEIGHTS
    header, _ = _split(weights)
    assert header["__metadata__"][TENSORS_SHA256_KEY] == tensors_sha256(weights)
    a, b = load_exported(export), load_exported(weights)
    ids = torch.arange(8)[None]
    torch.testing.assert_close(a.model(ids), b.model(ids), rtol=0, atol=0)
    assert b.vocab == VOCAB and b.meta == {"step": 3}


def test_lone_safetensors_with_a_flipped_data_byte_is_refused(export: Path) -> None:
    weights = export / EXPORT_WEIGHTS
    _flip_data_byte(weights)
    with pytest.raises(ExportError, match=rf"{weights}: SHA-256 of the tensors does not match"):
        load_exported(weights)
    # The directory path catches it even when config.json's whole-file hash was re-recorded.
    _rerecord(export)
    with pytest.raises(ExportError, match=rf"{weights}: SHA-256 of the tensors"):
        load_exported(export)


def test_lone_safetensors_without_a_digest_needs_an_explicit_opt_in(export: Path) -> None:
    weights = export / EXPORT_WEIGHTS
    header, data = _split(weights)
    del header["__metadata__"][TENSORS_SHA256_KEY]  # as written before the digest existed
    _join(weights, header, data)
    with pytest.raises(ExportError, match=rf"{weights}: no {TENSORS_SHA256_KEY} .* allow_unverified=True"):
        load_exported(weights)
    assert load_exported(weights, allow_unverified=True).vocab == VOCAB


def test_unreadable_tensor_with_rerecorded_hashes_names_the_file(export: Path) -> None:
    """safetensors' own SafetensorError says nothing about which file; ours does."""
    weights = export / EXPORT_WEIGHTS
    header, data = _split(weights)
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [s * 2 for s in header[name]["shape"]]  # no longer fits its offsets
    header["__metadata__"].pop(TENSORS_SHA256_KEY)
    _join(weights, header, data)
    header["__metadata__"][TENSORS_SHA256_KEY] = tensors_sha256(weights)
    _join(weights, header, data)
    _rerecord(export)
    with pytest.raises(ExportError, match=rf"{weights}: cannot read the safetensors weights: SafetensorError"):
        load_exported(export)


@pytest.mark.parametrize("cut", [4, 40, -3])
def test_truncated_or_overlong_header_is_a_named_error(export: Path, cut: int) -> None:
    weights = export / EXPORT_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:cut])
    with pytest.raises(ExportError, match=rf"{weights}: "):
        load_exported(weights)
