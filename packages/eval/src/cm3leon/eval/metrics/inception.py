"""The FID variant of Inception-v3 (pool3, 2048-d) and a strict loader for its weights file.

FID numbers are only comparable when computed with the network of the original TensorFlow
implementation (``inception-2015-12-05``).  Its PyTorch port is distributed as the state dict
``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid; torch-fidelity ships the same tensors
as ``weights-inception-2015-12-05-6726825d.pth``).  Nothing can be downloaded here, so this
module defines the architecture with the exact parameter names of that file and loads it from
a local path:

* stem ``Conv2d_1a_3x3 … Conv2d_4a_3x3`` and the blocks ``Mixed_5b … Mixed_7c`` are
  convolution + batch norm (``eps=1e-3``) + ReLU units (``<unit>.conv.weight``,
  ``<unit>.bn.{weight,bias,running_mean,running_var}``), and ``fc`` is the 1008-way
  classifier (present in the file, unused for pool3 features);
* it differs from torchvision's Inception-v3 exactly where TensorFlow's graph does: the
  average pools of the A, C and first E blocks exclude padding from the mean
  (``count_include_pad=False``) and the last E block (``Mixed_7c``) max-pools its pool branch.

Inputs are RGB in ``[0, 1]``, resized bilinearly to 299×299 (``align_corners=False``, like
pytorch-fid) and scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FIDInceptionV3",
    "INCEPTION_WEIGHTS_FILE",
    "InceptionWeightsError",
    "load_fid_inception",
]

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
_INPUT_SIZE = 299


class InceptionWeightsError(ValueError):
    """The weights file does not have the layout of the FID Inception state dict."""


class _Unit(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU: TF's ``conv2d_bn`` unit."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], **conv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, bias=False, **conv)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow averages only over the valid (non-padded) inputs.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg-pool→1×1."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Unit(cin, 64, 1)
        self.branch5x5_1 = _Unit(cin, 48, 1)
        self.branch5x5_2 = _Unit(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Unit(cin, 64, 1)
        self.branch3x3dbl_2 = _Unit(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Unit(96, 96, 3, padding=1)
        self.branch_pool = _Unit(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([a, b, c, d], dim=1)


class _ReduceB(nn.Module):
    """35→17 grid reduction: 3×3/2 | 1×1→3×3→3×3/2 | max-pool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Unit(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Unit(cin, 64, 1)
        self.branch3x3dbl_2 = _Unit(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Unit(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class _MixedC(nn.Module):
    """17×17 block with factorised 7×7 convolutions."""

    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _Unit(cin, 192, 1)
        self.branch7x7_1 = _Unit(cin, c7, 1)
        self.branch7x7_2 = _Unit(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Unit(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Unit(cin, c7, 1)
        self.branch7x7dbl_2 = _Unit(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Unit(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Unit(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Unit(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Unit(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for unit in (
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            c = unit(c)
        d = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([a, b, c, d], dim=1)


class _ReduceD(nn.Module):
    """17→8 grid reduction."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Unit(cin, 192, 1)
        self.branch3x3_2 = _Unit(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Unit(cin, 192, 1)
        self.branch7x7x3_2 = _Unit(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Unit(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Unit(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = x
        for unit in (
            self.branch7x7x3_1,
            self.branch7x7x3_2,
            self.branch7x7x3_3,
            self.branch7x7x3_4,
        ):
            b = unit(b)
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class _MixedE(nn.Module):
    """8×8 block with split 1×3 / 3×1 outputs; ``max_pool`` marks TF's ``Mixed_7c`` quirk."""

    def __init__(self, cin: int, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Unit(cin, 320, 1)
        self.branch3x3_1 = _Unit(cin, 384, 1)
        self.branch3x3_2a = _Unit(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Unit(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Unit(cin, 448, 1)
        self.branch3x3dbl_2 = _Unit(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Unit(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Unit(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Unit(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], dim=1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], dim=1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([a, b, c, self.branch_pool(pooled)], dim=1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as used for FID: images ``(B, 3, H, W)`` in ``[0, 1]`` -> pool3 ``(B, 2048)``.

    Build it empty and fill it with :func:`load_fid_inception`; ``num_features`` is 2048.
    """

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Unit(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Unit(32, 32, 3)
        self.Conv2d_2b_3x3 = _Unit(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Unit(64, 80, 1)
        self.Conv2d_4a_3x3 = _Unit(80, 192, 3)
        self.Mixed_5b = _MixedA(192, pool_features=32)
        self.Mixed_5c = _MixedA(256, pool_features=64)
        self.Mixed_5d = _MixedA(288, pool_features=64)
        self.Mixed_6a = _ReduceB(288)
        self.Mixed_6b = _MixedC(768, channels_7x7=128)
        self.Mixed_6c = _MixedC(768, channels_7x7=160)
        self.Mixed_6d = _MixedC(768, channels_7x7=160)
        self.Mixed_6e = _MixedC(768, channels_7x7=192)
        self.Mixed_7a = _ReduceD(768)
        self.Mixed_7b = _MixedE(1280, max_pool=False)
        self.Mixed_7c = _MixedE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # the 1008-way TF classifier; part of the file format

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features of ``images`` ``(B, 3, H, W)`` (float in [0, 1] or uint8)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
        weight = self.Conv2d_1a_3x3.conv.weight
        x = (
            images.to(weight.dtype) / 255.0
            if images.dtype == torch.uint8
            else images.to(weight.dtype)
        )
        if x.shape[-2:] != (_INPUT_SIZE, _INPUT_SIZE):
            x = F.interpolate(
                x, size=(_INPUT_SIZE, _INPUT_SIZE), mode="bilinear", align_corners=False
            )
        x = 2.0 * x - 1.0  # (B, 3, 299, 299) in [-1, 1]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
            x = block(x)  # -> (B, 768, 17, 17)
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a):
            x = block(x)  # -> (B, 1280, 8, 8)
        x = self.Mixed_7c(self.Mixed_7b(x))  # (B, 2048, 8, 8)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 2048)


def _check_layout(state: Mapping[str, torch.Tensor], model: nn.Module, path: Path) -> None:
    expected = model.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} != model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", wrong),
    ):
        if items:
            shown = ", ".join(items[:6]) + (
                f", ... ({len(items)} in total)" if len(items) > 6 else ""
            )
            problems.append(f"{label}: {shown}")
    if problems:
        raise InceptionWeightsError(
            f"{path}: not an FID Inception-v3 state dict ({INCEPTION_WEIGHTS_FILE} layout); "
            + "; ".join(problems)
        )


def load_fid_inception(
    path: str | Path, *, check_hash: bool = False, dtype: torch.dtype = torch.float32
) -> FIDInceptionV3:
    """Load the FID Inception network from a local ``.pth`` state dict.

    Args:
        path: e.g. ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid) or torch-fidelity's
            ``weights-inception-2015-12-05-6726825d.pth``.
        check_hash: require the file's SHA-256 to start with the 8 hex digits in its name
            (torch.hub's naming convention), to catch a corrupted or substituted file.
        dtype: parameter dtype (``torch.float64`` for extra precision).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InceptionWeightsError: not a tensor state dict, missing/unexpected keys or wrong
            shapes (all listed), or a hash mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: FID Inception weights not found; place {INCEPTION_WEIGHTS_FILE} (from the "
            "pytorch-fid releases) there and pass its path (--weights / weights_path=...)"
        )
    if check_hash:
        from cm3leon.core.io import sha256_file

        match = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
        if match is None:
            raise InceptionWeightsError(
                f"{path}: check_hash needs a file name ending in -<hash>.pth"
            )
        digest = sha256_file(path)
        if not digest.startswith(match.group(1)):
            raise InceptionWeightsError(
                f"{path}: SHA-256 {digest[:16]}... does not start with {match.group(1)} (corrupted file?)"
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of many kinds; report the file
        raise InceptionWeightsError(
            f"{path}: cannot read as a weights-only state dict: {err}"
        ) from err
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InceptionWeightsError(f"{path}: expected a mapping of parameter names to tensors")
    model = FIDInceptionV3()
    _check_layout(state, model, path)
    full = dict(state)
    for key, value in model.state_dict().items():
        full.setdefault(key, value)  # only num_batches_tracked can be absent (unused in eval)
    model.load_state_dict(full, strict=True)
    model.to(dtype).eval().requires_grad_(False)
    return model
