"""Meta Chameleon's VQ-GAN: checkpoint loading and the ``transformers`` key mapping.

Chameleon ships its image tokenizer as a PyTorch Lightning checkpoint
(``tokenizer/vqgan.ckpt``) whose ``["state_dict"]`` holds the 293 tensors of the
taming VQ-GAN (68.7M parameters) plus, possibly, training-only entries such as the
discriminator/perceptual loss (``loss.*``).  :func:`load_chameleon_checkpoint`
reads it with ``torch.load(weights_only=True)``, keeps only the keys of the model
and loads them **strictly** into the ``chameleon`` preset.  The architecture may
instead be read from the release's taming-style ``vqgan.yaml``
(:func:`vqgan_config_from_taming_yaml`).

``transformers`` ships only the encoder half (``ChameleonVQVAE``: encoder,
``quant_conv``, ``quantize``, ``post_quant_conv``) and nests it in its models.  The
key mapping (:func:`map_transformers_state_dict`) is a pure prefix change:

====================================================  ===============================
``transformers`` key                                   cm3leon key
====================================================  ===============================
``model.vqmodel.encoder.<rest>`` (``ChameleonForConditionalGeneration``)  ``encoder.<rest>``
``vqmodel.encoder.<rest>`` (``ChameleonModel``)        ``encoder.<rest>``
``encoder.<rest>`` (``ChameleonVQVAE`` alone)          ``encoder.<rest>``
``...quant_conv.*`` / ``...post_quant_conv.*``         ``quant_conv.*`` / ``post_quant_conv.*``
``...quantize.embedding.weight``                       ``quantize.embedding.weight``
(absent)                                               ``decoder.*``
====================================================  ===============================

Inside the encoder the module names are identical (``down.{i}.block.{j}.nin_shortcut``,
``down.{i}.downsample.conv``, ``mid.block_1``, ``mid.attn_1.{q,k,v,proj_out}``,
``norm_out``, ``conv_out``), so no key is renamed below the prefix.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cm3leon.tokenizers.image_io import Preprocess
from cm3leon.tokenizers.image_tokenizer import VQGANTokenizer, load_state_dict_strict
from cm3leon.tokenizers.vqgan import VQModel, init_vq_model
from cm3leon.tokenizers.vqgan_config import VQGANConfig, vqgan_preset

__all__ = [
    "CHAMELEON_PREPROCESS",
    "ENCODER_HALF_PREFIXES",
    "build_chameleon_tokenizer",
    "load_chameleon_checkpoint",
    "load_encoder_half",
    "map_transformers_state_dict",
    "vqgan_config_from_taming_yaml",
]

#: Chameleon's preprocessing: RGBA on white, shortest side -> 512 (Lanczos), centre crop.
CHAMELEON_PREPROCESS = Preprocess(size=512, resize="shortest_side", background=(255, 255, 255),
                                  exif_transpose=False)

#: Parameter prefixes of the encoder half (what ``transformers`` ships).
ENCODER_HALF_PREFIXES = ("encoder.", "quant_conv.", "quantize.", "post_quant_conv.")

_TRANSFORMERS_PREFIXES = ("model.vqmodel.", "vqmodel.")


def build_chameleon_tokenizer(*, seed: int | None = None, batch_size: int = 8) -> VQGANTokenizer:
    """Factory of the ``chameleon_vqgan`` tokenizer: the Chameleon preset, random weights."""
    model = init_vq_model(vqgan_preset("chameleon"), seed=seed)
    return VQGANTokenizer(model, CHAMELEON_PREPROCESS, batch_size=batch_size)


def vqgan_config_from_taming_yaml(path: str | Path) -> VQGANConfig:
    """Read ``model.params`` (``ddconfig``, ``n_embed``, ``embed_dim``) of a taming YAML.

    Raises:
        ValueError: the file lacks a key or describes an unsupported variant
            (``double_z``, ``out_ch != in_ch``); the message names the file and key.
    """
    from cm3leon.core.config import load_yaml_file

    data = load_yaml_file(path)
    try:
        params = data["model"]["params"]
        dd = params["ddconfig"]
        if dd.get("double_z", False):
            raise ValueError("model.params.ddconfig.double_z=true is not a VQ-GAN (KL autoencoder)")
        if dd.get("out_ch", dd["in_channels"]) != dd["in_channels"]:
            raise ValueError("model.params.ddconfig.out_ch must equal in_channels")
        return VQGANConfig(
            resolution=int(dd["resolution"]),
            in_channels=int(dd["in_channels"]),
            base_channels=int(dd["ch"]),
            channel_mult=tuple(dd["ch_mult"]),
            num_res_blocks=int(dd["num_res_blocks"]),
            attn_resolutions=tuple(dd.get("attn_resolutions") or ()),
            z_channels=int(dd["z_channels"]),
            codebook_size=int(params["n_embed"]),
            codebook_dim=int(params["embed_dim"]),
            dropout=float(dd.get("dropout", 0.0)),
        )
    except KeyError as err:
        raise ValueError(f"{path}: missing key {err.args[0]!r} under model.params") from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def _read_lightning_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty checkpoint file (0 bytes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: refused to unpickle non-tensor objects (weights_only=True): {err}"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint: {err}") from None
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict'; found {keys})")
    state = ckpt["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: ['state_dict'] is {type(state).__name__}, expected a mapping")
    return state


def load_chameleon_checkpoint(
    path: str | Path,
    *,
    config_path: str | Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> VQGANTokenizer:
    """Load Meta's Chameleon ``vqgan.ckpt`` into a :class:`VQGANTokenizer`.

    Args:
        path: the Lightning checkpoint, or the release's ``tokenizer/`` directory holding
            ``vqgan.ckpt`` (and ``vqgan.yaml``, used when present).
        config_path: optional ``vqgan.yaml``; without it the ``chameleon`` preset is used.
        device: where to put the model.
        batch_size: images per forward pass.

    Raises:
        FileNotFoundError: missing file.
        ValueError: unreadable/unsafe checkpoint, or the filtered state dict does not
            match the model exactly (missing keys or wrong shapes, named).
    """
    path = Path(path)
    if path.is_dir():
        if config_path is None and (path / "vqgan.yaml").is_file():
            config_path = path / "vqgan.yaml"
        path = path / "vqgan.ckpt"
    config = vqgan_config_from_taming_yaml(config_path) if config_path else vqgan_preset("chameleon")
    state = _read_lightning_state_dict(path)
    model = VQModel(config)
    wanted = set(model.state_dict())
    filtered = {k: v for k, v in state.items() if k in wanted}  # drops loss.* etc.
    load_state_dict_strict(model, filtered, source=f"{path}['state_dict']")
    prep = Preprocess(config.resolution, "shortest_side", CHAMELEON_PREPROCESS.background, exif_transpose=False)
    info = {"source": str(path), "dropped_keys": len(state) - len(filtered)}
    return VQGANTokenizer(model.to(device), prep, batch_size=batch_size, info=info)


def map_transformers_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """Map a ``transformers`` Chameleon state dict to cm3leon's encoder-half keys.

    Keys outside the VQ model (the language model's) are dropped.  See the module
    docstring for the table.
    """
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        rest = key
        for prefix in _TRANSFORMERS_PREFIXES:
            if key.startswith(prefix):
                rest = key[len(prefix) :]
                break
        else:
            if key.startswith(("model.", "lm_head.")):  # the language model, not the VQ
                continue
        if rest.startswith(ENCODER_HALF_PREFIXES):
            mapped[rest] = value
    return mapped


def load_encoder_half(model: VQModel, state: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
    """Load exactly the encoder half (encoder, quant convs, codebook); decoder untouched.

    Raises:
        ValueError: a key of the encoder half is missing or has the wrong shape, or
            ``state`` holds keys outside it (names them).
    """
    own = {k: v for k, v in model.state_dict().items() if k.startswith(ENCODER_HALF_PREFIXES)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{source}: encoder half does not match: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"{source}: key {key!r} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    result = model.load_state_dict(dict(state), strict=False)
    assert not result.unexpected_keys  # invariant: checked above
