"""The VQ-GAN network: conv encoder -> vector quantizer -> conv decoder.

Module names and parameter layout follow taming-transformers, so the
``state_dict`` keys are those of Meta's Chameleon checkpoint
(``encoder.down.{i}.block.{j}.conv1.weight``, ``quantize.embedding.weight``, ...).
Every forward computes the same operations in the same order as the reference
implementation (swish as ``x * sigmoid(x)``, attention via two ``bmm``), so a mapped
checkpoint reproduces its codes exactly.

Shapes: images are ``(B, 3, H, W)`` floats in ``[-1, 1]``; latents ``(B, D, h, w)``
with ``h = H / 2**(len(channel_mult) - 1)``; codes ``(B, h, w)`` int64.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cm3leon.tokenizers.quantizer import VectorQuantizer
from cm3leon.tokenizers.vqgan_config import VQGANConfig

__all__ = [
    "AttnBlock",
    "Decoder",
    "Downsample",
    "Encoder",
    "ResnetBlock",
    "Upsample",
    "VQModel",
    "VQOutput",
    "init_vq_model",
]


def _swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)``; in place when no gradient is needed (``x`` is always a fresh
    GroupNorm output here), which saves an allocation per activation at inference."""
    if torch.is_grad_enabled() and x.requires_grad:
        return x * torch.sigmoid(x)
    return x.mul_(torch.sigmoid(x))


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm -> swish -> conv3x3, twice, plus a (1x1 conv when widths differ) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv projections and a residual."""

    def __init__(self, channels: int, *, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, height, width = q.shape
        q = q.reshape(b, c, height * width).permute(0, 2, 1)  # (B, HW, C)
        k = k.reshape(b, c, height * width)  # (B, C, HW)
        weights = torch.bmm(q, k) * (int(c) ** (-0.5))  # (B, HW_q, HW_k)
        weights = F.softmax(weights, dim=2)
        v = v.reshape(b, c, height * width)  # (B, C, HW)
        out = torch.bmm(v, weights.permute(0, 2, 1)).reshape(b, c, height, width)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv with asymmetric (right/bottom) zero padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, cfg: VQGANConfig) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, groups=cfg.num_groups, dropout=cfg.dropout)
    mid.attn_1 = AttnBlock(channels, groups=cfg.num_groups) if cfg.mid_attention else nn.Identity()
    mid.block_2 = ResnetBlock(channels, channels, groups=cfg.num_groups, dropout=cfg.dropout)
    return mid


class Encoder(nn.Module):
    """Image ``(B, 3, H, W)`` -> latents ``(B, z_channels, h, w)``."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        ch, mult, groups = cfg.base_channels, cfg.channel_mult, cfg.num_groups
        self.num_levels, self.num_res_blocks = len(mult), cfg.num_res_blocks
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, kernel_size=3, stride=1, padding=1)
        self.down = nn.ModuleList()
        res, block_in = cfg.resolution, ch
        for level, m in enumerate(mult):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * m
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, groups=groups, dropout=cfg.dropout))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in, groups=groups))
            if level != len(mult) - 1:
                stage.downsample = Downsample(block_in)
                res //= 2
            self.down.append(stage)
        self.mid = _mid(block_in, cfg)
        self.norm_out = _norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level, stage in enumerate(self.down):
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if level != self.num_levels - 1:
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(_swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents ``(B, z_channels, h, w)`` -> image ``(B, 3, H, W)`` (unbounded; ~[-1, 1])."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        ch, mult, groups = cfg.base_channels, cfg.channel_mult, cfg.num_groups
        self.num_levels = len(mult)
        block_in = ch * mult[-1]
        res = cfg.latent_size
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = _mid(block_in, cfg)
        up_stages: list[nn.Module] = []
        for level in reversed(range(len(mult))):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, groups=groups, dropout=cfg.dropout))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in, groups=groups))
            if level != 0:
                stage.upsample = Upsample(block_in)
                res *= 2
            up_stages.insert(0, stage)  # keep taming's indexing: up[0] is the finest level
        self.up = nn.ModuleList(up_stages)
        self.norm_out = _norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, cfg.in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(range(self.num_levels)):
            stage = self.up[level]
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if level != 0:
                h = stage.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class VQOutput(NamedTuple):
    """Result of :meth:`VQModel.forward`."""

    reconstruction: torch.Tensor  # (B, 3, H, W)
    codes: torch.Tensor  # (B, h, w)
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    latents: torch.Tensor  # (B*h*w, D) lookup-space encoder outputs


class VQModel(nn.Module):
    """Encoder + ``quant_conv`` + quantizer + ``post_quant_conv`` + decoder.

    Args:
        config: the architecture (see :func:`cm3leon.tokenizers.vqgan_config.vqgan_preset`).
    """

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = VectorQuantizer(
            config.codebook_size,
            config.codebook_dim,
            beta=config.commitment_beta,
            l2_normalized=config.l2_normalized_codes,
        )
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(config.codebook_dim, config.z_channels, kernel_size=1)

    def _check_pixels(self, x: torch.Tensor) -> None:
        cfg = self.config
        factor = cfg.downsample_factor
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"VQModel expects images (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(
                f"VQModel: image size {tuple(x.shape[2:])} is not divisible by the downsampling factor {factor}"
            )

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] -> pre-quantization latents ``(B, D, h, w)``."""
        self._check_pixels(x)
        return self.quant_conv(self.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] -> codes ``(B, h, w)`` int64."""
        return self.quantize(self.encode_latents(x)).codes

    def decode_latents(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latents ``(B, D, h, w)`` -> images ``(B, 3, H, W)``."""
        return self.decoder(self.post_quant_conv(quantized))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, h, w)`` or ``(B, h*w)`` -> images ``(B, 3, H, W)`` (not clamped)."""
        if codes.dim() == 2:
            side = int(round(codes.shape[1] ** 0.5))
            if side * side != codes.shape[1]:
                raise ValueError(f"cannot reshape {codes.shape[1]} codes per image into a square grid")
            codes = codes.view(codes.shape[0], side, side)
        if codes.dim() != 3:
            raise ValueError(f"codes must be (B, h, w) or (B, h*w), got {tuple(codes.shape)}")
        return self.decode_latents(self.quantize.embed_codes(codes))

    def forward(self, x: torch.Tensor) -> VQOutput:
        """Full autoencoding pass used for training."""
        q = self.quantize(self.encode_latents(x))
        return VQOutput(self.decode_latents(q.quantized), q.codes, q.codebook_loss, q.commitment_loss, q.latents)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_vq_model(config: VQGANConfig, *, seed: int | None = None) -> VQModel:
    """A freshly initialised :class:`VQModel`; ``seed`` makes it reproducible without
    touching the global random state."""
    if seed is None:
        return VQModel(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VQModel(config)
