"""The VQ image tokenizer: images <-> codes, batched, with safetensors export.

:class:`VQGANTokenizer` satisfies :class:`cm3leon.core.interfaces.ImageTokenizer`::

    tok = VQGANTokenizer.from_preset("small_32", seed=0)
    codes = tok.encode([pil_image, "photo.png", uint8_array])   # (3, 64) int64
    images = tok.decode(codes)                                    # 3 RGB PIL images
    tok.save("runs/vq_small/tokenizer")                           # safetensors + JSON
    tok = load_image_tokenizer("runs/vq_small/tokenizer")

An exported tokenizer is a directory written atomically (``COMPLETE`` marker last):
``config.json`` (architecture, preprocessing, SHA-256 of the weights, free-form
training info), ``model.safetensors`` and core's ``cm3leon_tokenizer.json`` marker
(``{"name": "vqgan"}``, read by :func:`cm3leon.core.tokenization.resolve_tokenizer`).
No pickles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cm3leon.core.io import atomic_directory, atomic_write_json, is_complete, read_json, sha256_file
from cm3leon.core.tokenization import write_tokenizer_marker
from cm3leon.tokenizers.image_io import ImageFailure, Preprocess, load_images
from cm3leon.tokenizers.vqgan import VQModel, init_vq_model
from cm3leon.tokenizers.vqgan_config import VQGANConfig, vqgan_preset

__all__ = [
    "EXPORT_FORMAT",
    "BatchEncoding",
    "VQGANTokenizer",
    "build_image_tokenizer",
    "load_image_tokenizer",
]

EXPORT_FORMAT = "cm3leon-vqgan"
_FORMAT_VERSION = 1
_CONFIG_FILE = "config.json"
_WEIGHTS_FILE = "model.safetensors"
#: Name under which this tokenizer is registered (written to ``cm3leon_tokenizer.json``).
REGISTERED_NAME = "vqgan"


@dataclass
class BatchEncoding:
    """Result of :meth:`VQGANTokenizer.encode_batch` (lenient mode).

    Attributes:
        codes: ``(N_ok, num_tokens)`` int64 codes of the images that could be read.
        indices: input position of each row of ``codes``.
        failures: the images that could not be used, with the reason.
    """

    codes: torch.Tensor
    indices: list[int]
    failures: list[ImageFailure] = field(default_factory=list)


def _as_list(images: Any) -> list[Any]:
    """A batch as a list; a single path/bytes/PIL image/``(H, W[, C])`` array is wrapped."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray, Image.Image)):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return list(images) if images.ndim == 4 else [images]
    return list(images)


class VQGANTokenizer:
    """Images <-> VQ codes with a :class:`VQModel` and Chameleon-style preprocessing.

    Args:
        model: the VQ-GAN network (put in eval mode).
        preprocess: input preprocessing; defaults to ``Preprocess(model.config.resolution)``.
        batch_size: images per forward pass in :meth:`encode`/:meth:`decode`.
        info: free-form JSON-serialisable metadata saved with the tokenizer.
    """

    def __init__(
        self,
        model: VQModel,
        preprocess: Preprocess | None = None,
        *,
        batch_size: int = 32,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.preprocess = preprocess or Preprocess(model.config.resolution)
        if self.preprocess.size % model.config.downsample_factor:
            raise ValueError(
                f"preprocess size {self.preprocess.size} is not divisible by the downsampling "
                f"factor {model.config.downsample_factor}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.info = dict(info or {})

    @classmethod
    def from_preset(cls, name: str, *, seed: int | None = None, **overrides: Any) -> VQGANTokenizer:
        """An untrained (randomly initialised) tokenizer of preset ``name``."""
        return cls(init_vq_model(vqgan_preset(name, **overrides), seed=seed))

    # ----------------------------------------------------------------- properties
    @property
    def config(self) -> VQGANConfig:
        return self.model.config

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def image_size(self) -> int:
        return self.preprocess.size

    @property
    def latent_size(self) -> int:
        return self.image_size // self.config.downsample_factor

    @property
    def num_tokens(self) -> int:
        return self.latent_size**2

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> VQGANTokenizer:
        self.model.to(device)
        return self

    # ------------------------------------------------------------------- encoding
    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels ``(B, 3, H, W)`` in ``[-1, 1]`` -> codes ``(B, h*w)`` int64."""
        out = []
        for start in range(0, pixels.shape[0], self.batch_size):
            chunk = pixels[start : start + self.batch_size].to(self.device, next(self.model.parameters()).dtype)
            out.append(self.model.encode(chunk).flatten(1).cpu())  # (b, h*w)
        if not out:
            return torch.zeros(0, self.num_tokens, dtype=torch.long)
        return torch.cat(out)

    def encode(self, images: Sequence[Any], *, strict: bool = True) -> torch.Tensor:
        """Encode images (paths, bytes, PIL, arrays, tensors) to codes ``(B, num_tokens)``.

        Raises:
            ImageBatchError: some images could not be read or converted; the error lists
                every failed image by name (use :meth:`encode_batch` to keep the others).
        """
        pixels, _, _ = load_images(_as_list(images), self.preprocess, strict=strict)
        return self.encode_pixels(pixels)

    def encode_batch(self, images: Sequence[Any]) -> BatchEncoding:
        """Lenient :meth:`encode`: bad images are reported in ``failures``, not raised."""
        pixels, ok, failures = load_images(_as_list(images), self.preprocess, strict=False)
        return BatchEncoding(self.encode_pixels(pixels), ok, failures)

    # ------------------------------------------------------------------- decoding
    def _check_codes(self, codes: Any) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
        if t.dim() == 1:
            t = t.unsqueeze(0)
        if t.dim() != 2 or t.shape[1] != self.num_tokens:
            raise ValueError(f"codes must be (B, {self.num_tokens}), got shape {tuple(t.shape)}")
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {t.dtype}")
        bad = (t < 0) | (t >= self.codebook_size)
        if bad.any():
            row, col = (int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(
                f"VQ code {int(t[row, col])} at image {row}, position {col} is out of range "
                f"[0, {self.codebook_size})"
            )
        return t.long()

    @torch.inference_mode()
    def decode_pixels(self, codes: Any) -> torch.Tensor:
        """Codes ``(B, num_tokens)`` -> pixels ``(B, 3, H, W)`` clamped to ``[-1, 1]``."""
        codes = self._check_codes(codes)
        side = self.latent_size
        out = []
        for start in range(0, codes.shape[0], self.batch_size):
            chunk = codes[start : start + self.batch_size].view(-1, side, side).to(self.device)
            out.append(self.model.decode(chunk).clamp(-1.0, 1.0).float().cpu())
        if not out:
            return torch.zeros(0, 3, self.image_size, self.image_size)
        return torch.cat(out)

    def decode(self, codes: Any) -> list[Image.Image]:
        """Codes ``(B, num_tokens)`` -> ``B`` RGB ``PIL.Image`` objects."""
        return [pixels_to_pil(p) for p in self.decode_pixels(codes)]

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Export to ``directory`` atomically: ``config.json`` + ``model.safetensors``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            save_file(state, str(tmp / _WEIGHTS_FILE), metadata={"format": EXPORT_FORMAT})
            atomic_write_json(
                tmp / _CONFIG_FILE,
                {
                    "format": EXPORT_FORMAT,
                    "format_version": _FORMAT_VERSION,
                    "vqgan": self.config.to_dict(),
                    "preprocess": self.preprocess.to_dict(),
                    "weights": _WEIGHTS_FILE,
                    "sha256": sha256_file(tmp / _WEIGHTS_FILE),
                    "info": self.info,
                },
            )
            write_tokenizer_marker(tmp, REGISTERED_NAME, {"format": EXPORT_FORMAT})
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> VQGANTokenizer:
        """Restore a tokenizer written by :meth:`save` (hash-checked, strict)."""
        return load_image_tokenizer(directory, device=device)


def pixels_to_pil(pixels: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` in ``[-1, 1]`` -> RGB image.

    Chameleon's ``_pil_from_chw_tensor`` truncates ``x * 255``; this rounds instead, so
    ``to_pixels`` followed by ``pixels_to_pil`` returns the input pixels exactly.
    """
    arr = ((pixels.clamp(-1.0, 1.0) + 1.0) / 2.0).permute(1, 2, 0).numpy()  # (H, W, 3)
    return Image.fromarray(np.round(arr * 255.0).astype(np.uint8))


def load_image_tokenizer(directory: str | Path, *, device: str | torch.device = "cpu") -> VQGANTokenizer:
    """Load an exported VQ tokenizer directory.

    Raises:
        FileNotFoundError: the directory or a file in it is missing.
        ValueError: the export is incomplete, of another format, fails its hash check,
            or its weights do not match its config (names the file and key).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: tokenizer directory not found")
    if not is_complete(directory):
        raise ValueError(f"{directory}: incomplete tokenizer export (no COMPLETE marker)")
    cfg_path = directory / _CONFIG_FILE
    meta = read_json(cfg_path)
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{cfg_path}: not a {EXPORT_FORMAT} export (format={meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: unsupported format_version {meta.get('format_version')!r}")
    config = VQGANConfig.from_dict(meta.get("vqgan", {}), source=f"{cfg_path}: vqgan")
    prep = Preprocess.from_dict(meta.get("preprocess", {"size": config.resolution}), source=str(cfg_path))
    weights = directory / str(meta.get("weights", _WEIGHTS_FILE))
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: weights file not found")
    digest = sha256_file(weights)
    if meta.get("sha256") and digest != meta["sha256"]:
        raise ValueError(f"{weights}: SHA-256 {digest} does not match {meta['sha256']} in {cfg_path}")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights}: cannot read safetensors: {err}") from None
    model = VQModel(config)
    load_state_dict_strict(model, state, source=str(weights))
    return VQGANTokenizer(model.to(device), prep, info=meta.get("info") or {})


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with errors that name ``source`` and the keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not match the model: missing {len(missing)} key(s) {missing[:5]}, "
            f"unexpected {len(unexpected)} key(s) {unexpected[:5]}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{source}: key {key!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def build_image_tokenizer(preset: str = "small_32", *, seed: int | None = None, image_size: int | None = None,
                          batch_size: int = 32, **overrides: Any) -> VQGANTokenizer:
    """Factory registered as the ``vqgan`` tokenizer: an untrained tokenizer of ``preset``.

    Args:
        preset: ``chameleon``, ``paper``, ``small_64`` or ``small_32``.
        seed: initialisation seed.
        image_size: preprocessing size (defaults to the preset's resolution).
        batch_size: images per forward pass.
        **overrides: :class:`VQGANConfig` fields to change.
    """
    model = init_vq_model(vqgan_preset(preset, **overrides), seed=seed)
    prep = Preprocess(image_size or model.config.resolution)
    return VQGANTokenizer(model, prep, batch_size=batch_size)
