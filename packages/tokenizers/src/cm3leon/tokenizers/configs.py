"""Config schema of ``configs/tokenizers/*.yaml`` (registered as ``tokenizers``).

One schema serves the folder; ``kind`` says which section is used::

    # cm3leon tokenizers train-image configs/tokenizers/vq_small.yaml
    kind: image
    run_name: vq_small
    image:
      model: {preset: small_32}
      data: {paths: [runs/world/images]}
      max_steps: 400

Loaded with :func:`cm3leon.core.config.load_config` (unknown keys rejected with their
dotted path, dotted ``key=value`` overrides), then checked by :func:`check_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from cm3leon.core.precision import precision_problem

__all__ = [
    "ImageDataConfig",
    "ImageTrainConfig",
    "LossConfig",
    "OptimConfig",
    "RestartConfig",
    "TextDataConfig",
    "TextTrainConfig",
    "TokenizersConfig",
    "VQModelConfig",
    "check_config",
]


@dataclass
class TextDataConfig:
    """Corpus: ``.txt`` files (one document per line), ``.jsonl`` (``field``), directories, globs."""

    paths: list[str] = field(default_factory=list)
    field: str = "text"
    max_documents: int | None = None


@dataclass
class TextTrainConfig:
    """Byte-level BPE training (paper vocabulary: 56,320)."""

    vocab_size: int = 56320
    min_frequency: int = 2
    data: TextDataConfig = field(default_factory=TextDataConfig)


@dataclass
class VQModelConfig:
    """Architecture: a preset plus :class:`~cm3leon.tokenizers.vqgan_config.VQGANConfig` overrides."""

    preset: str = "small_32"
    overrides: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None  # preprocessing size; default: the preset's resolution


@dataclass
class ImageDataConfig:
    """Training images: image files/directories/globs (``folder``) or MDS shard directories (``mds``)."""

    paths: list[str] = field(default_factory=list)
    format: str = "auto"  # auto | folder | mds
    flip_p: float = 0.5
    num_workers: int = 0


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 0.0
    warmup_steps: int = 20


@dataclass
class LossConfig:
    l1: float = 1.0
    l2: float = 0.0
    codebook: float = 1.0


@dataclass
class RestartConfig:
    """Dead-code restarts (see :class:`cm3leon.tokenizers.vq_training.DeadCodeRestart`)."""

    enabled: bool = True
    every: int = 25
    threshold: float = 0.03
    warmup: int = 25
    usage_decay: float = 0.99


@dataclass
class ImageTrainConfig:
    """VQ-GAN training with Composer."""

    model: VQModelConfig = field(default_factory=VQModelConfig)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    restarts: RestartConfig = field(default_factory=RestartConfig)
    batch_size: int = 32
    max_steps: int = 400
    save_interval: int = 100  # steps between Composer checkpoints
    checkpoints_to_keep: int = 2
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | amp_bf16 (CPU: bf16 autocast) | auto | amp_fp16 (GPU); cm3leon.core.precision
    progress_bar: bool = True


@dataclass
class TokenizersConfig:
    """Top level of a ``configs/tokenizers`` file."""

    kind: str = MISSING  # "text" or "image"
    run_name: str = MISSING
    output_dir: str = "runs/tokenizers/${run_name}"
    seed: int = 0
    overwrite: bool = False  # replace an existing exported tokenizer
    text: TextTrainConfig | None = None
    image: ImageTrainConfig | None = None


def check_config(cfg: TokenizersConfig, *, source: str = "<config>") -> None:
    """Cross-field checks OmegaConf cannot express; errors name ``source`` and the key.

    Raises:
        ValueError: wrong ``kind``, missing section, or an out-of-range value.
    """
    if cfg.kind not in ("text", "image"):
        raise ValueError(f"{source}: key 'kind' must be 'text' or 'image', got {cfg.kind!r}")
    section = getattr(cfg, cfg.kind)
    if section is None:
        raise ValueError(f"{source}: kind '{cfg.kind}' needs a '{cfg.kind}' section")
    if not section.data.paths:
        raise ValueError(f"{source}: key '{cfg.kind}.data.paths' must list at least one path")
    if cfg.kind == "text":
        if section.vocab_size < 256:
            raise ValueError(f"{source}: key 'text.vocab_size' must be >= 256, got {section.vocab_size}")
        return
    img: ImageTrainConfig = section
    checks = [
        ("image.batch_size", img.batch_size, img.batch_size >= 1, ">= 1"),
        ("image.max_steps", img.max_steps, img.max_steps >= 1, ">= 1"),
        ("image.save_interval", img.save_interval, img.save_interval >= 1, ">= 1"),
        ("image.optim.lr", img.optim.lr, img.optim.lr > 0, "> 0"),
        ("image.optim.betas", img.optim.betas, len(img.optim.betas) == 2, "two numbers"),
        ("image.data.format", img.data.format, img.data.format in ("auto", "folder", "mds"), "auto, folder or mds"),
        ("image.data.flip_p", img.data.flip_p, 0.0 <= img.data.flip_p <= 1.0, "in [0, 1]"),
    ]
    for key, value, ok, expected in checks:
        if not ok:
            raise ValueError(f"{source}: key {key!r} must be {expected}, got {value!r}")
    problem = precision_problem(img.precision, img.device, key="image.precision")
    if problem:
        raise ValueError(f"{source}: {problem}")
