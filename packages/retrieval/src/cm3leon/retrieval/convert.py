"""open_clip weights in every form users have -> the encoder directory a bank uses.

The forms, each read without unpickling untrusted data:

======================  ============================================  ================================
form                    what it is                                    read with
======================  ============================================  ================================
``safetensors``         an open_clip state dict (``*.safetensors``)   ``safetensors``
``state-dict``          a ``torch.save``'d state dict (``.bin``,      ``torch.load(weights_only=True)``
                        ``.pt``, ``.pth``; ``{"state_dict": ...}``
                        and DDP ``module.`` prefixes accepted)
``openai-torchscript``  OpenAI's TorchScript archive                  ``torch.jit.load``, only for
                        (``ViT-B-32.pt``, ``RN50.pt``, ...)           SHA-256-allowlisted files
``open_clip-dir``       a Hugging Face hub open_clip folder           as above, per weights file
                        (``open_clip_config.json`` +
                        ``open_clip_model.safetensors`` or
                        ``open_clip_pytorch_model.bin``)
======================  ============================================  ================================

A state dict does not say its architecture: give the open_clip name (``ViT-B-32``).
A TorchScript archive does, through its hash: :func:`official_openai_archives` maps the
SHA-256 of every OpenAI file in open_clip's pretrained registry (the hash is part of
OpenAI's download URL) to its ``-quickgelu`` architecture, because OpenAI trained
with QuickGELU: the same weights in plain ``ViT-B-32`` (GELU) give different
embeddings without any error.  Naming a different architecture for such an archive is
an error that names the right one.

``torch.load(weights_only=True)`` refuses TorchScript archives, and ``torch.jit.load``
deserialises code as well as tensors; so an archive is hashed first, in memory, and
only an allowlisted one is handed (as those same bytes) to ``torch.jit.load``.  Any
other archive is refused with its hash in the message.

::

    cm3leon retrieval convert-encoder ViT-B-32.pt runs/clip/vit-b-32-openai
    cm3leon retrieval convert-encoder open_clip_model.safetensors OUT --model ViT-B-32
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cm3leon.retrieval.encoder import (
    CONFIG_FILE,
    EncoderError,
    build_clip_model,
    load_encoder,
    model_config,
    save_encoder,
)

__all__ = [
    "OPENAI_ARCHIVE_EXTRA_KEYS",
    "TEST_ONLY_TRUSTED_TORCHSCRIPT",
    "Checkpoint",
    "build_from_checkpoint",
    "convert_encoder",
    "is_torchscript_archive",
    "official_openai_archives",
    "read_checkpoint",
    "read_open_clip_dir",
    "resolve_arch",
    "trusted_torchscript_archives",
]

# Non-weight entries of OpenAI's archives (ints stored as tensors); open_clip drops them too.
OPENAI_ARCHIVE_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")

# SHA-256 -> architecture of TorchScript archives trusted *in tests only*, as if they were
# OpenAI's.  Empty in shipped code; a test adds the hash of an archive it built itself
# (``monkeypatch.setitem``) to exercise the accepted path without OpenAI's files.
TEST_ONLY_TRUSTED_TORCHSCRIPT: dict[str, str] = {}

# Weight file names of an open_clip folder, in order of preference (HF hub names included).
DIR_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class Checkpoint:
    """A weights file read safely.

    Attributes:
        form: ``"safetensors"``, ``"state-dict"`` or ``"openai-torchscript"``.
        path: the file.
        sha256: hex SHA-256 of the file's bytes.
        state: the tensors, keys as in open_clip (or OpenAI, which are the same).
        arch: the open_clip architecture the file itself identifies (allowlisted
            TorchScript archives), else ``None``.
    """

    form: str
    path: Path
    sha256: str
    state: dict[str, torch.Tensor]
    arch: str | None = None


def official_openai_archives() -> dict[str, str]:
    """SHA-256 -> ``-quickgelu`` architecture of OpenAI's published CLIP archives.

    Read from open_clip's own pretrained registry (tag ``openai``); OpenAI's download
    URLs carry the file's SHA-256 as their second-to-last component.
    """
    from open_clip.pretrained import get_pretrained_url, list_pretrained_models_by_tag

    out: dict[str, str] = {}
    for name in list_pretrained_models_by_tag("openai"):
        url = get_pretrained_url(name, "openai")
        if "openaipublic" not in url:
            continue
        out[url.split("/")[-2]] = f"{name.removesuffix('-quickgelu')}-quickgelu"
    return out


def trusted_torchscript_archives() -> dict[str, str]:
    """The allowlist :func:`read_checkpoint` checks: OpenAI's files (+ test-only entries)."""
    return {**official_openai_archives(), **TEST_ONLY_TRUSTED_TORCHSCRIPT}


def is_torchscript_archive(source: str | Path | io.BytesIO) -> bool:
    """Whether ``source`` is a TorchScript zip (``<root>/constants.pkl`` + ``<root>/code/``)."""
    if not zipfile.is_zipfile(source):
        return False
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return False
    roots = {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/constants.pkl")}
    return any(n.startswith(f"{root}/code/") for root in roots for n in names)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a weights file of any supported form, never unpickling untrusted data.

    Raises:
        EncoderError: missing file, a TorchScript archive not on the allowlist, a pickle
            that ``weights_only=True`` refuses, or no tensors in it (the message names the file).
    """
    from cm3leon.core.io import sha256_file

    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises SafetensorError / OSError
            raise EncoderError(f"{path}: not a readable safetensors file: {err}") from err
        return Checkpoint("safetensors", path, sha256_file(path), state)
    if is_torchscript_archive(path):
        return _read_torchscript(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise EncoderError(
            f"{path}: refused by torch.load(weights_only=True) (damaged, or more than tensors in it): {err}"
        ) from None
    return Checkpoint("state-dict", path, sha256_file(path), _unwrap_state(loaded, path))


def _unwrap_state(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise EncoderError(f"{path}: expected a state dict of tensors, got {type(loaded).__name__}")
    if all(k.startswith("module.") for k in loaded):  # saved from DistributedDataParallel
        loaded = {k.removeprefix("module."): v for k, v in loaded.items()}
    return loaded


def _read_torchscript(path: Path) -> Checkpoint:
    import hashlib

    data = path.read_bytes()  # hash and load the same bytes: no swap between check and use
    sha = hashlib.sha256(data).hexdigest()
    arch = trusted_torchscript_archives().get(sha)
    if arch is None:
        raise EncoderError(
            f"{path}: TorchScript archive with SHA-256 {sha} is not one of OpenAI's published CLIP "
            "files (the hashes in open_clip's pretrained registry); a TorchScript archive carries "
            "code, so only those are read. Save other models as a state dict "
            "(safetensors.torch.save_file(model.state_dict(), ...)) and convert that."
        )
    state = _load_trusted_torchscript(data)
    for key in OPENAI_ARCHIVE_EXTRA_KEYS:
        state.pop(key, None)
    return Checkpoint("openai-torchscript", path, sha, state, arch=arch)


def _load_trusted_torchscript(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of an archive whose bytes' SHA-256 :func:`_read_torchscript` found allowlisted."""
    # Sanctioned torch.jit.load (tests/test_unsafe_calls.py ALLOWED): only reached for
    # bytes whose SHA-256 is one of OpenAI's published archives (or a test's own archive).
    with warnings.catch_warnings():  # "torch.jit.load is deprecated": nothing the user can act on
        warnings.simplefilter("ignore", FutureWarning)
        archive = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return {k: v.detach().clone() for k, v in archive.state_dict().items()}


def resolve_arch(ckpt: Checkpoint, model: str | None) -> str:
    """The architecture to build for ``ckpt``: the file's own (TorchScript) or ``model``.

    Raises:
        EncoderError: no architecture for a state dict, or one that contradicts the archive
            (OpenAI weights need the ``-quickgelu`` architecture; the message names it).
    """
    if ckpt.arch is None:
        if model is None:
            raise EncoderError(
                f"{ckpt.path}: a {ckpt.form} file does not say its architecture: give the open_clip "
                "name (--model ViT-B-32; OpenAI's weights are ViT-B-32-quickgelu)"
            )
        return model
    if model is not None and model != ckpt.arch:
        hint = (" OpenAI trained with QuickGELU, and the GELU architecture would silently give other "
                "embeddings." if model == ckpt.arch.removesuffix("-quickgelu") else "")
        raise EncoderError(f"{ckpt.path}: this is OpenAI's {ckpt.arch} archive; load it as {ckpt.arch!r}, "
                           f"not {model!r}.{hint}")
    return ckpt.arch


def build_from_checkpoint(
    ckpt: Checkpoint,
    model_cfg: dict[str, Any],
    *,
    preprocess_cfg: dict[str, Any] | None = None,
    name: str = "",
) -> nn.Module:
    """An open_clip model of ``model_cfg`` with ``ckpt``'s weights, loaded strictly.

    Applies the same state-dict fix-ups as ``open_clip.load_checkpoint`` (third-party
    key layouts, old text-tower keys, scalar ``logit_scale``, position-embedding
    resizing) to the tensors read here, so open_clip never opens the file itself.

    Raises:
        EncoderError: missing/unexpected keys or shape mismatches (names the file and ``name``).
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import (
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    clip = build_clip_model(model_cfg, preprocess_cfg=preprocess_cfg)
    state = convert_state_dict(clip, dict(ckpt.state))
    if "positional_embedding" in state and not hasattr(clip, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for key in ("logit_scale", "logit_bias"):
        param = getattr(clip, key, None)
        if key in state and param is not None and param.ndim != state[key].ndim:
            state[key] = state[key].reshape(param.shape)
    if "logit_bias" not in state and getattr(clip, "logit_bias", None) is not None:
        state["logit_bias"] = torch.zeros_like(state["logit_scale"])
    state.pop("text.transformer.embeddings.position_ids", None)
    try:
        resize_pos_embed(state, clip)  # asserts when widths differ
        resize_text_pos_embed(state, clip)
        clip.load_state_dict(state, strict=True)
    except (RuntimeError, AssertionError, KeyError, ValueError) as err:
        raise EncoderError(f"{ckpt.path}: cannot load as open_clip {name!r}: {err}") from err
    return clip.float().eval()


def read_open_clip_dir(directory: Path) -> tuple[dict[str, Any], dict[str, Any], Checkpoint]:
    """``(model_cfg, preprocess_cfg, checkpoint)`` of an open_clip / HF hub folder."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise EncoderError(f"{directory}: not an open_clip folder (no {CONFIG_FILE})")
    config = json.loads(config_path.read_text())
    if not isinstance(config.get("model_cfg"), dict):
        raise EncoderError(f"{config_path}: no 'model_cfg' object")
    weights = next((directory / n for n in DIR_WEIGHTS if (directory / n).is_file()), None)
    if weights is None:
        raise EncoderError(f"{directory}: no weights file (looked for {', '.join(DIR_WEIGHTS)})")
    return config["model_cfg"], dict(config.get("preprocess_cfg") or {}), read_checkpoint(weights)


def convert_encoder(
    src: str | Path, out: str | Path, *, model: str | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Turn any supported form into an encoder directory (what banks and ``load_encoder`` read).

    Args:
        src: a weights file (safetensors, ``torch.save`` state dict, OpenAI TorchScript
            archive) or an open_clip folder (``open_clip_config.json`` + weights).
        out: the encoder directory to write (atomically).
        model: the open_clip architecture of a state-dict file; optional for an OpenAI
            archive (must then be its ``-quickgelu`` name); not allowed for a folder.
        overwrite: replace an existing ``out``.

    Returns:
        A report: ``encoder``, ``model``, ``form``, ``source``, ``source_sha256``, ``fingerprint``.

    Raises:
        EncoderError: see :func:`read_checkpoint`, :func:`resolve_arch`, :func:`build_from_checkpoint`.
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    src = Path(src)
    if src.is_dir():
        if model is not None:
            raise EncoderError(f"{src}: an open_clip folder names its architecture in {CONFIG_FILE}; drop --model")
        model_cfg, preprocess_cfg, ckpt = read_open_clip_dir(src)
        arch, form = f"{src.name} ({CONFIG_FILE})", "open_clip-dir"
    else:
        ckpt = read_checkpoint(src)
        arch, form, preprocess_cfg = resolve_arch(ckpt, model), ckpt.form, None
        model_cfg = model_config(arch)
    clip = build_from_checkpoint(ckpt, model_cfg, preprocess_cfg=preprocess_cfg, name=arch)
    provenance = {"form": form, "source": src.name, "weights_sha256": ckpt.sha256, "model": arch}
    path = save_encoder(clip, model_cfg, out, overwrite=overwrite, extra={"converted_from": provenance})
    return {"encoder": str(path), "model": arch, "form": form, "source": str(src),
            "source_sha256": ckpt.sha256, "fingerprint": load_encoder(path).fingerprint}
