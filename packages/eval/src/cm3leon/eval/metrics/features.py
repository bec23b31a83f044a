"""Image feature extractors registered for FID: ``inception`` and ``clip``.

Both follow the feature-extractor hook's contract: a module mapping a float image batch
``(B, 3, H, W)`` in ``[0, 1]`` to features ``(B, D)``, with ``num_features = D``.

The CLIP extractor does not import the retrieval package: it takes any
:class:`cm3leon.core.interfaces.DocumentEncoder` — an object, a registered name, or a
``"module:attr"`` factory — and calls its ``encode_image``.  Any plain callable
``images -> (B, D)`` works too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cm3leon.core.interfaces import DocumentEncoder

__all__ = [
    "DEFAULT_ENCODER",
    "ClipFeatureExtractor",
    "EncoderNotFoundError",
    "clip_extractor",
    "inception_extractor",
    "resolve_document_encoder",
    "tensor_to_pil",
]

# Registries searched (in order) for a DocumentEncoder registered under a given name.
_ENCODER_REGISTRIES = ("feature_extractors", "retrievers", "models")
# cm3leon-retrieval registers its frozen CLIP encoder (a DocumentEncoder that is also an
# image feature extractor) under this name.
DEFAULT_ENCODER = "clip-image"


class EncoderNotFoundError(LookupError):
    """No DocumentEncoder could be obtained for the given reference."""


def _unwrap_encoder(obj: Any) -> DocumentEncoder | None:
    if isinstance(obj, DocumentEncoder):
        return obj
    inner = getattr(obj, "encoder", None)
    return inner if isinstance(inner, DocumentEncoder) else None


def resolve_document_encoder(
    encoder: Any, options: Mapping[str, Any] | None = None, *, registries: Any = None
) -> DocumentEncoder:
    """Return a :class:`DocumentEncoder` for ``encoder``.

    Args:
        encoder: an encoder object; a ``"package.module:attr"`` factory string (called with
            ``options``); or a registered component name (default ``"clip-image"``, the
            retrieval package's frozen CLIP encoder), looked up in the
            ``feature_extractors``, ``retrievers`` and ``models`` registries (in that
            order; cm3leon-eval's own wrappers are skipped); the first match is built with
            ``options`` and must be a ``DocumentEncoder`` or expose one as ``.encoder``
            (e.g. a dense retriever).
        options: keyword options for a factory or registered component.
        registries: registries to search (default: the process-wide ones).

    Raises:
        EncoderNotFoundError: nothing usable was found; the message lists what was tried.
    """
    options = dict(options or {})
    if not isinstance(encoder, str):
        found = _unwrap_encoder(encoder)
        if found is None:
            raise EncoderNotFoundError(
                f"{type(encoder).__name__} is not a DocumentEncoder (needs dim, encode_text, "
                "encode_image, encode_documents) and has no .encoder attribute that is one"
            )
        return found
    if ":" in encoder:
        from cm3leon.core.registry import resolve_object

        found = _unwrap_encoder(resolve_object(encoder)(**options))
        if found is None:
            raise EncoderNotFoundError(f"factory {encoder!r} did not return a DocumentEncoder")
        return found
    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    tried = []
    for attr in _ENCODER_REGISTRIES:
        registry = getattr(registries, attr)
        if encoder not in registry:
            tried.append(f"{attr} (not registered)")
            continue
        factory = registry.get(encoder).factory
        if isinstance(factory, str) and factory.startswith("cm3leon.eval."):
            tried.append(f"{attr} (cm3leon-eval's own wrapper, not an encoder)")
            continue
        try:
            built = registry.build(encoder, **options)
        except Exception as err:  # any factory error; say which component and options
            raise EncoderNotFoundError(
                f"building {registry.kind} {encoder!r} with options {options} failed: {err}"
            ) from err
        found = _unwrap_encoder(built)
        if found is None:
            raise EncoderNotFoundError(
                f"{registry.kind} {encoder!r} built a {type(built).__name__}, which is not a "
                "DocumentEncoder and has no .encoder that is one"
            )
        return found
    raise EncoderNotFoundError(
        f"no DocumentEncoder named {encoder!r}: tried {', '.join(tried)}. Install "
        "cm3leon-retrieval for the CLIP encoder, or pass 'package.module:factory'."
    )


def tensor_to_pil(images: torch.Tensor) -> list[Any]:
    """``(B, 3, H, W)`` floats in ``[0, 1]`` (or uint8) -> RGB ``PIL.Image`` list."""
    from PIL import Image

    if images.dtype != torch.uint8:
        images = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
    return [Image.fromarray(np.ascontiguousarray(a), mode="RGB") for a in arrays]


class ClipFeatureExtractor(nn.Module):
    """CLIP image embeddings as FID features (``(B, 3, H, W)`` -> ``(B, dim)``).

    Args:
        encoder: a :class:`DocumentEncoder`, or any callable ``images -> (B, D)`` tensor.
        image_format: what the encoder receives — ``"pil"`` (RGB images, the format every
            encoder accepts) or ``"tensor"`` (the batch unchanged).
        num_features: ``D`` when the encoder does not expose ``dim``.
    """

    def __init__(
        self,
        encoder: DocumentEncoder | Callable[[Any], torch.Tensor],
        *,
        image_format: str = "pil",
        num_features: int | None = None,
    ) -> None:
        super().__init__()
        if image_format not in ("pil", "tensor"):
            raise ValueError(f"image_format must be 'pil' or 'tensor', got {image_format!r}")
        self.encoder = encoder
        self.image_format = image_format
        dim = num_features if num_features is not None else getattr(encoder, "dim", None)
        self.num_features = None if dim is None else int(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
        batch: Any = tensor_to_pil(images) if self.image_format == "pil" else images
        if isinstance(self.encoder, DocumentEncoder):
            feats = self.encoder.encode_image(batch)
        else:
            feats = self.encoder(batch)
        feats = torch.as_tensor(feats)
        if feats.ndim != 2 or feats.shape[0] != images.shape[0]:
            raise ValueError(
                f"CLIP encoder returned shape {tuple(feats.shape)} for {images.shape[0]} images"
            )
        return feats.float()


def clip_extractor(
    encoder: Any = DEFAULT_ENCODER,
    *,
    encoder_options: Mapping[str, Any] | None = None,
    image_format: str = "pil",
    num_features: int | None = None,
) -> ClipFeatureExtractor:
    """Factory of the ``clip`` feature extractor (see :func:`resolve_document_encoder`).

    A callable that is not a DocumentEncoder is used as is (``images -> features``).
    """
    if not isinstance(encoder, str) and _unwrap_encoder(encoder) is None and callable(encoder):
        resolved: Any = encoder
    else:
        resolved = resolve_document_encoder(encoder, encoder_options)
    return ClipFeatureExtractor(resolved, image_format=image_format, num_features=num_features)


_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def inception_extractor(
    weights_path: str | Path | None = None, *, check_hash: bool = False, dtype: str = "float32"
) -> nn.Module:
    """Factory of the ``inception`` feature extractor (FID Inception-v3 pool3, 2048-d).

    ``weights_path`` defaults to the ``CM3LEON_FID_INCEPTION`` environment variable.
    """
    import os

    from cm3leon.eval.metrics.inception import INCEPTION_WEIGHTS_FILE, load_fid_inception

    path = weights_path or os.environ.get("CM3LEON_FID_INCEPTION")
    if not path:
        raise FileNotFoundError(
            f"the inception extractor needs weights_path (a local {INCEPTION_WEIGHTS_FILE}) "
            "or the CM3LEON_FID_INCEPTION environment variable"
        )
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return load_fid_inception(path, check_hash=check_hash, dtype=_DTYPES[dtype])
