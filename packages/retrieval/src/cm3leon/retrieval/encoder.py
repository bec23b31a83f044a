"""The frozen CLIP bi-encoder of §2.1: one vector per text, image and document.

A document is split into its text part (all text segments joined) and its image
part (every image; several images are averaged); each part is encoded by a
frozen open_clip tower and L2-normalised, and the document vector is the
renormalised average of the available parts::

    e_doc = normalize(normalize(e_text) + normalize(e_image))   # (D,)

Text-only and image-only documents use the part they have.

Weights come only from local files, through open_clip's own loader:

* an **encoder directory** in open_clip's ``local-dir:`` format
  (``open_clip_config.json`` + ``open_clip_model.safetensors``), which is what
  ``cm3leon retrieval train-clip`` writes; or
* any **open_clip architecture name** (``"ViT-B-32"``, the paper's encoder) plus a
  checkpoint file (``.safetensors``, a ``.pt``/``.bin`` state dict read with
  ``torch.load(weights_only=True)``, or OpenAI's hash-allowlisted TorchScript
  ``ViT-B-32.pt`` as ``"ViT-B-32-quickgelu"``; :mod:`cm3leon.retrieval.convert`
  turns any of them into an encoder directory).

The encoder is also a ``torch.nn.Module`` whose ``forward`` maps a float image
batch ``(B, 3, H, W)`` in ``[0, 1]`` to unit-norm features ``(B, D)``, so the same
object serves as the ``"clip-image"`` feature extractor (FID with CLIP features,
CLIP score, re-ranking).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cm3leon.core.documents import Document, ImageSegment

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "ClipDocumentEncoder",
    "EncoderError",
    "build_clip_model",
    "load_encoder",
    "model_config",
    "register_model_configs",
    "save_encoder",
]

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"

# Decodes VQ-only image segments to pixels (an image tokenizer's ``decode``).
CodeDecoder = Callable[[torch.Tensor], list[Any]]


class EncoderError(ValueError):
    """An encoder checkpoint or an input to the encoder is invalid."""


MODEL_CONFIG_DIR = Path(__file__).with_name("model_configs")


def register_model_configs() -> list[str]:
    """Make this package's open_clip architectures (``cm3leon-clip-tiny``) known by name.

    Uses open_clip's own extension point (``open_clip.add_model_config``); idempotent.
    Returns the names added.
    """
    import open_clip

    names = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
    if any(n not in open_clip.list_models() for n in names):
        open_clip.add_model_config(MODEL_CONFIG_DIR)
    return names


def model_config(arch: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The open_clip config of architecture ``arch`` with ``overrides`` deep-merged in.

    Raises:
        EncoderError: unknown architecture (lists the known ones).
    """
    import open_clip

    register_model_configs()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise EncoderError(f"unknown open_clip architecture {arch!r}; known: {', '.join(open_clip.list_models())}")
    return _deep_merge(cfg, overrides or {})


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def build_clip_model(model_cfg: dict[str, Any], *, preprocess_cfg: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate an open_clip model class from an architecture dict (random weights).

    Args:
        model_cfg: open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...),
            the same dict open_clip's JSON model configs hold.
        preprocess_cfg: open_clip preprocess overrides (``mean``, ``std``, ...); the size
            always follows the vision tower.

    Returns:
        An ``open_clip.CLIP`` (or ``CustomTextCLIP``) in float32 with its preprocess config set.
    """
    from open_clip.model import CLIP, CustomTextCLIP, set_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = json.loads(json.dumps(model_cfg))  # deep copy, JSON types only
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in cfg:
            raise EncoderError(f"open_clip model config lacks {key!r}: {sorted(cfg)}")
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    model = (CustomTextCLIP if custom else CLIP)(**cfg)
    pp = merge_preprocess_dict(PreprocessCfg(), preprocess_cfg or {})
    pp["size"] = model.visual.image_size
    set_model_preprocess_cfg(model, pp)
    return model


def save_encoder(
    model: nn.Module,
    model_cfg: dict[str, Any],
    directory: str | Path,
    *,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as an open_clip ``local-dir:`` checkpoint, atomically.

    The directory holds ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``)
    and ``open_clip_model.safetensors``; ``open_clip.create_model("local-dir:DIR")``
    and :func:`load_encoder` read it back.
    """
    from safetensors.torch import save_file

    from cm3leon.core.io import atomic_directory, atomic_write_json

    preprocess = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
        if extra:
            config["cm3leon"] = extra
        atomic_write_json(tmp / CONFIG_FILE, config)
    return Path(directory)


def _fingerprint(model_id: str, weights: Path | None) -> str:
    """Identity of an encoder: architecture + SHA-256 of its weights file."""
    from cm3leon.core.io import sha256_file

    digest = sha256_file(weights) if weights is not None else "random-init"
    return hashlib.sha256(f"{model_id}\n{digest}".encode()).hexdigest()[:16]


def load_encoder(
    path: str | Path | None = None,
    *,
    model: str | None = None,
    pretrained: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 64,
) -> ClipDocumentEncoder:
    """Load a frozen CLIP document encoder from local files only.

    Args:
        path: an encoder directory (``open_clip_config.json`` + weights), as written by
            :func:`save_encoder` / ``cm3leon retrieval train-clip | convert-encoder``.
        model: an open_clip architecture name (``"ViT-B-32"``); use with ``pretrained``.
        pretrained: a local checkpoint file for ``model`` (never a download tag): an
            open_clip ``.safetensors``, a ``torch.save``'d state dict (``.bin``/``.pt``,
            read with ``weights_only=True``) or OpenAI's TorchScript archive
            (``ViT-B-32.pt``: only the published files, by SHA-256, and only as the
            ``-quickgelu`` architecture; see :mod:`cm3leon.retrieval.convert`).  Text
            towers that use a Hugging Face tokenizer need it in the local HF cache.
        device: torch device for encoding.
        batch_size: encoding batch size.

    Raises:
        EncoderError: neither or both of ``path``/``model`` given, missing files, or an
            architecture/checkpoint mismatch (the message names the file).
    """
    if (path is None) == (model is None):
        raise EncoderError("load_encoder: give exactly one of path=DIR or model=NAME (+ pretrained=FILE)")
    if path is not None:
        clip, tokenizer, name, model_id, weights = _load_directory(Path(path), device)
    else:
        assert model is not None
        if pretrained is None:
            raise EncoderError(f"load_encoder(model={model!r}) needs pretrained=<local checkpoint file>")
        clip, weights = _load_named(model, Path(pretrained))
        tokenizer, name, model_id = _tokenizer(model), model, model
    return ClipDocumentEncoder(
        clip, tokenizer, device=device, batch_size=batch_size, name=name,
        fingerprint=_fingerprint(model_id, weights),
    )


def _load_directory(directory: Path, device: str) -> tuple[nn.Module, Any, str, str, Path]:
    import open_clip

    if not (directory / CONFIG_FILE).is_file():
        raise EncoderError(f"{directory}: not a CLIP encoder directory (no {CONFIG_FILE})")
    # The file open_clip's local-dir loader prefers; other names are not supported.
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise EncoderError(
            f"{directory}: no {WEIGHTS_FILE} next to {CONFIG_FILE} "
            "(convert an open_clip folder with `cm3leon retrieval convert-encoder`)"
        )
    name = f"local-dir:{directory}"
    try:
        clip = open_clip.create_model(name, device=device, weights_only=True)
    except Exception as err:  # open_clip raises RuntimeError/ValueError/KeyError
        raise EncoderError(f"{directory}: cannot load CLIP encoder: {err}") from err
    model_id = json.dumps(json.loads((directory / CONFIG_FILE).read_text())["model_cfg"], sort_keys=True)
    return clip, open_clip.get_tokenizer(name), name, model_id, weights


def _load_named(model: str, weights: Path) -> tuple[nn.Module, Path]:
    """Architecture ``model`` with the weights of a local file of any supported form."""
    from cm3leon.retrieval.convert import build_from_checkpoint, read_checkpoint, resolve_arch

    ckpt = read_checkpoint(weights)
    arch = resolve_arch(ckpt, model)
    return build_from_checkpoint(ckpt, model_config(arch), name=arch), weights


def _tokenizer(model: str) -> Any:
    import open_clip

    register_model_configs()
    return open_clip.get_tokenizer(model)


class ClipDocumentEncoder(nn.Module):
    """Frozen open_clip towers implementing :class:`cm3leon.core.interfaces.DocumentEncoder`.

    Args:
        model: an open_clip ``CLIP``-like module (``encode_text``, ``encode_image``).
        tokenizer: the open_clip tokenizer (``tokenizer(texts) -> (N, L)`` ids).
        device: torch device.
        batch_size: encoding batch size.
        name: where it came from (``local-dir:...`` or the architecture name).
        fingerprint: identity of architecture + weights (stored in bank manifests).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        name: str = "",
        fingerprint: str = "",
    ) -> None:
        super().__init__()
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.name = name
        self.fingerprint = fingerprint
        pp = getattr(model.visual, "preprocess_cfg", None) or {"size": model.visual.image_size}
        self.preprocess_cfg = PreprocessCfg(**{k: v for k, v in pp.items() if k in PreprocessCfg.__dataclass_fields__})
        # open_clip's eval transform; it accepts PIL images and float (3, H, W) tensors.
        self.transform = image_transform_v2(self.preprocess_cfg, is_train=False)
        self._dim: int | None = None

    def train(self, mode: bool = True) -> ClipDocumentEncoder:
        """The encoder is frozen: it always stays in eval mode."""
        return super().train(False)

    # ------------------------------------------------------------- protocol
    @property
    def dim(self) -> int:
        """Embedding width (the CLIP projection size)."""
        if self._dim is None:
            self._dim = int(self.encode_text(["a"]).shape[1])
        return self._dim

    @property
    def image_size(self) -> int:
        size = self.preprocess_cfg.size
        return int(size if isinstance(size, int) else size[0])

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP BPE ids ``(N, L)`` with start/end tokens and zero padding."""
        return self.tokenizer(list(texts))

    @torch.inference_mode()
    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit-norm text embeddings ``(N, D)`` from token ids ``(N, L)``."""
        out = [
            F.normalize(self.model.encode_text(tokens[i : i + self.batch_size].to(self.device)).float(), dim=-1)
            for i in range(0, len(tokens), self.batch_size)
        ]
        return torch.cat(out).cpu() if out else torch.zeros(0, self._dim or 0)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text embeddings ``(N, D)`` float32."""
        if isinstance(texts, str):
            raise EncoderError("encode_text takes a sequence of strings, not one string")
        return self.encode_tokens(self.tokenize(texts))

    def encode_image(self, images: Sequence[Any]) -> torch.Tensor:
        """Unit-norm image embeddings ``(N, D)`` float32.

        Accepts PIL images, ``(H, W, 3)`` uint8 arrays, pixel-carrying
        :class:`ImageSegment` objects, or float tensors ``(3, H, W)`` / ``(B, 3, H, W)``
        in ``[0, 1]``.
        """
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return self(images)
        pixels = [self._preprocess(img, i) for i, img in enumerate(images)]
        if not pixels:
            return torch.zeros(0, self.dim)
        return self._encode_pixels(torch.stack(pixels))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Feature-extractor view: ``(B, 3, H, W)`` in ``[0, 1]`` -> unit-norm ``(B, D)``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise EncoderError(f"expected an image batch (B, 3, H, W), got shape {tuple(images.shape)}")
        return self._encode_pixels(torch.stack([self.transform(img.float()) for img in images]))

    def encode_documents(
        self, docs: Sequence[Document], *, code_decoder: CodeDecoder | None = None
    ) -> torch.Tensor:
        """Document vectors ``(N, D)``: normalised average of the normalised parts.

        Args:
            docs: documents with text and/or image segments.
            code_decoder: turns VQ codes ``(B, N)`` into pixels for images that carry
                only codes (an image tokenizer's ``decode``).
        """
        text, image, has_text, has_image = self.encode_parts(docs, code_decoder=code_decoder)
        return combine_parts(text, image, has_text, has_image)

    # -------------------------------------------------------------- helpers
    def encode_parts(
        self, docs: Sequence[Document], *, code_decoder: CodeDecoder | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-part embeddings: ``text (N, D)``, ``image (N, D)`` and their masks ``(N,)``.

        Missing parts are zero rows with a false mask; a document with several images
        gets the normalised mean of their embeddings.

        Raises:
            EncoderError: a document has neither non-empty text nor an image.
        """
        n = len(docs)
        has_text = torch.tensor([bool(d.text.strip()) for d in docs], dtype=torch.bool)
        has_image = torch.tensor([bool(d.images) for d in docs], dtype=torch.bool)
        for i, d in enumerate(docs):
            if not (has_text[i] or has_image[i]):
                raise EncoderError(f"document {d.id or i!r} has neither text nor image to encode")
        dim = self.dim
        text = torch.zeros(n, dim)
        text_rows = has_text.nonzero().flatten().tolist()
        if text_rows:
            text[text_rows] = self.encode_text([docs[i].text for i in text_rows])
        image = torch.zeros(n, dim)
        owners: list[int] = []
        pixels: list[Any] = []
        for i, d in enumerate(docs):
            for seg in d.images:
                pixels.append(_segment_pixels(seg, d, code_decoder))
                owners.append(i)
        if pixels:
            per_image = self.encode_image(pixels)  # (M, D)
            image.index_add_(0, torch.tensor(owners), per_image)
            image = F.normalize(image, dim=-1)
        return text, image, has_text, has_image

    def _preprocess(self, img: Any, index: int) -> torch.Tensor:
        from PIL import Image

        if isinstance(img, ImageSegment):
            img = img.pil()
        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise EncoderError(f"image {index}: arrays must be (H, W, 3) uint8, got {img.dtype} {img.shape}")
            img = Image.fromarray(img)
        if isinstance(img, torch.Tensor):
            if img.ndim != 3 or img.shape[0] != 3:
                raise EncoderError(f"image {index}: tensors must be (3, H, W), got {tuple(img.shape)}")
            return self.transform(img.float())
        if not isinstance(img, Image.Image):
            raise EncoderError(f"image {index}: unsupported type {type(img).__name__}")
        return self.transform(img.convert("RGB"))

    @torch.inference_mode()
    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        out = [
            F.normalize(self.model.encode_image(pixels[i : i + self.batch_size].to(self.device)).float(), dim=-1)
            for i in range(0, len(pixels), self.batch_size)
        ]
        return torch.cat(out).cpu()


def combine_parts(
    text: torch.Tensor, image: torch.Tensor, has_text: torch.Tensor, has_image: torch.Tensor
) -> torch.Tensor:
    """``normalize(text * has_text + image * has_image)`` row-wise; shapes ``(N, D)``."""
    total = text * has_text[:, None].float() + image * has_image[:, None].float()  # (N, D)
    return F.normalize(total, dim=-1)


def _segment_pixels(seg: ImageSegment, doc: Document, code_decoder: CodeDecoder | None) -> Any:
    if seg.image is not None:
        return seg.pil()
    if code_decoder is None:
        raise EncoderError(
            f"document {doc.id!r} has an image with only VQ codes; configure an image tokenizer "
            "to decode codes to pixels before CLIP encoding"
        )
    return code_decoder(torch.tensor([seg.codes], dtype=torch.long))[0]
