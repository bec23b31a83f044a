"""Vector quantizer: nearest-code lookup, codebook/commitment losses, dead-code restarts.

Design choice (issue 3, "EMA or l2-normalised codes"): **l2-normalised codes learned by
the codebook loss, plus dead-code restarts**, not EMA updates.

* The codebook stays an ordinary parameter (``quantize.embedding.weight``) with no extra
  persistent buffers, so the module's ``state_dict`` is exactly the taming/Chameleon
  one and the same class serves trained and released checkpoints.  EMA would add
  ``cluster_size``/``embed_avg`` state that the Chameleon checkpoint does not have, and
  it replaces the codebook loss the issue asks for.
* Cosine lookup on normalised vectors (ViT-VQGAN, Yu et al. 2022) keeps codes and
  encoder outputs on the same scale, which is what makes small codebooks trained from
  scratch use most of their entries; it is a config flag (off for Chameleon, whose
  codes are looked up by Euclidean distance).
* Codes that go unused (tracked by the trainer with an exponential moving count) are
  re-initialised to random encoder outputs of the current batch
  (:meth:`VectorQuantizer.restart_codes`), the standard fix for codebook collapse.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QuantizerOutput", "VectorQuantizer"]


class QuantizerOutput(NamedTuple):
    """Result of :meth:`VectorQuantizer.forward`.

    Attributes:
        quantized: straight-through quantized latents ``(B, D, h, w)``.
        codes: code indices ``(B, h, w)`` int64.
        codebook_loss: ``||sg[z] - e||^2`` (moves codes towards encoder outputs).
        commitment_loss: ``beta * ||z - sg[e]||^2`` (keeps the encoder near its codes).
        latents: the (normalised, if enabled) encoder outputs ``(B*h*w, D)`` used for lookup.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    latents: torch.Tensor


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup (taming ``VectorQuantizer2`` compatible keys).

    Args:
        codebook_size: number of codes ``K``.
        dim: code dimension ``D``.
        beta: commitment-loss weight.
        l2_normalized: compare and return unit-norm codes (cosine lookup).
    """

    def __init__(self, codebook_size: int, dim: int, *, beta: float = 0.25, l2_normalized: bool = False) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.beta = beta
        self.l2_normalized = l2_normalized
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def codebook(self) -> torch.Tensor:
        """The codes as used for lookup ``(K, D)`` (normalised if enabled)."""
        weight = self.embedding.weight
        return F.normalize(weight, dim=1) if self.l2_normalized else weight

    def lookup(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``flat`` ``(N, D)`` -> ``(N,)``."""
        codebook = self.codebook()  # (K, D)
        # ||z - e||^2 = ||z||^2 + ||e||^2 - 2 z.e, the taming formulation (kept term for
        # term so codes agree bit for bit with other implementations of it).
        distances = (
            torch.sum(flat**2, dim=1, keepdim=True)
            + torch.sum(codebook**2, dim=1)
            - 2 * torch.einsum("bd,dn->bn", flat, codebook.transpose(0, 1))
        )  # (N, K)
        return torch.argmin(distances, dim=1)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize encoder outputs ``z`` ``(B, D, h, w)``, in fp32 even under autocast.

        Under bf16 autocast the distance matmul would round ``z . e`` to 8 mantissa bits and
        pick other codes, so the search (and the codebook losses) leave autocast.
        """
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects (B, {self.dim}, h, w) latents, got {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            return self._quantize(z.float() if z.dtype in (torch.bfloat16, torch.float16) else z)

    def _quantize(self, z: torch.Tensor) -> QuantizerOutput:
        b, _, h, w = z.shape
        z = z.permute(0, 2, 3, 1).contiguous()  # (B, h, w, D)
        flat = z.view(-1, self.dim)  # (B*h*w, D)
        if self.l2_normalized:
            flat = F.normalize(flat, dim=1)
            z = flat.view(b, h, w, self.dim)
        codes = self.lookup(flat)  # (B*h*w,)
        z_q = self.codebook()[codes].view(b, h, w, self.dim)  # (B, h, w, D)
        codebook_loss = torch.mean((z_q - z.detach()) ** 2)
        commitment_loss = self.beta * torch.mean((z_q.detach() - z) ** 2)
        z_q = z + (z_q - z).detach()  # straight-through estimator
        quantized = z_q.permute(0, 3, 1, 2).contiguous()  # (B, D, h, w)
        return QuantizerOutput(quantized, codes.view(b, h, w), codebook_loss, commitment_loss, flat)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, h, w)`` -> quantized latents ``(B, D, h, w)``."""
        if codes.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel():
            lo, hi = int(codes.min()), int(codes.max())
            if lo < 0 or hi >= self.codebook_size:
                bad = lo if lo < 0 else hi
                raise ValueError(f"VQ code {bad} out of range [0, {self.codebook_size})")
        return self.codebook()[codes.long()].permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def restart_codes(self, dead: torch.Tensor, candidates: torch.Tensor, *, generator: torch.Generator | None = None) -> int:
        """Re-initialise the codes flagged in ``dead`` ``(K,)`` bool from ``candidates`` ``(N, D)``.

        Each dead code becomes a randomly chosen candidate (an encoder output of the
        current batch) plus a little noise, so restarted codes are immediately usable.

        Returns:
            The number of codes restarted.
        """
        idx = torch.nonzero(dead, as_tuple=False).flatten()
        if idx.numel() == 0 or candidates.numel() == 0:
            return 0
        pick = torch.randint(0, candidates.shape[0], (idx.numel(),), generator=generator, device=candidates.device)
        new = candidates[pick].to(self.embedding.weight.dtype)  # (n_dead, D)
        scale = new.std().clamp_min(1e-4)
        noise = torch.randn(new.shape, generator=generator, device=new.device, dtype=new.dtype)
        new = new + 0.01 * scale * noise
        self.embedding.weight[idx.to(self.embedding.weight.device)] = new.to(self.embedding.weight.device)
        return int(idx.numel())
