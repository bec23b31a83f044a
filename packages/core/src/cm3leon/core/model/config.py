"""The architecture of a CM3Leon transformer, as one validated dataclass.

Defaults follow the paper (§2.3) and its OPT lineage (Zhang et al., 2022):

* ``activation="relu"``: OPT's feed-forward activation.
* ``tie_embeddings=True``: the output projection reuses the token embedding, as OPT
  (and metaseq, which trained CM3Leon) does.  It is also the choice under which the
  parameter counts of Table 3's shapes match the model names: with the paper's
  64,532-id vocabulary the 350M shape has 372M parameters tied but 438M untied, the
  760M shape 785M tied, the 7B shape 6.72B tied (see ``tests/core/model``).
* ``init_std=0.006`` (truncated at 3 std), ``pos_init_std=0.0002``: §2.3 verbatim.
* ``norm_eps=1e-5``: PyTorch's and OPT's LayerNorm epsilon (the Hugging Face
  conversion requires it).
* ``attention="auto"``: the kernel for packed/padded attention
  (:mod:`cm3leon.core.model.attention`): FlexAttention on CUDA, dense-mask SDPA elsewhere.
  It is how the model *runs*, not what it *is*: it takes no part in ``==`` and is not in
  :meth:`TransformerConfig.to_dict` (checkpoint metadata), so a checkpoint loads under any
  kernel and ``model.init_from`` accepts an export trained with another one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIVATIONS", "ATTENTION_CHOICES", "TransformerConfig"]

#: Supported feed-forward activations (names as in ``torch.nn.functional``, plus the
#: tanh approximation of GELU).  OPT uses ``relu``.
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")

#: Kernels for packed / padded attention (:mod:`cm3leon.core.model.attention`).
ATTENTION_CHOICES = ("auto", "flex", "sdpa")


@dataclass(frozen=True)
class TransformerConfig:
    """Shape and initialisation of a decoder-only CM3Leon transformer.

    Attributes:
        vocab_size: rows of the token embedding (``Vocabulary.size``).
        d_model: residual width.
        n_layers: number of transformer blocks.
        n_heads: attention heads; must divide ``d_model``.
        d_ff: hidden width of the feed-forward layer.
        max_seq_len: rows of the learned position table (the longest sequence).
        activation: feed-forward activation, one of :data:`ACTIVATIONS`.
        tie_embeddings: share the token embedding with the output projection.
        init_std: std of the truncated-normal weight init (cut at 3 std).
        pos_init_std: std of the position-embedding init (cut at 3 std).
        norm_eps: LayerNorm epsilon.
        attention: kernel for packed / padded attention, one of ``"auto"`` (FlexAttention
            on CUDA, dense-mask SDPA elsewhere), ``"flex"`` (FlexAttention; an error where
            it cannot run) or ``"sdpa"`` (dense mask); see
            :mod:`cm3leon.core.model.attention`.  Not compared, not in :meth:`to_dict`.
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_seq_len: int
    activation: str = "relu"
    tie_embeddings: bool = True
    init_std: float = 0.006
    pos_init_std: float = 0.0002
    norm_eps: float = 1e-5
    attention: str = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"TransformerConfig.n_heads={self.n_heads} must divide d_model={self.d_model}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"TransformerConfig.activation must be one of {list(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(
                f"TransformerConfig.tie_embeddings must be a bool, got {self.tie_embeddings!r}"
            )
        for name in ("init_std", "pos_init_std", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"TransformerConfig.{name} must be a positive number, got {value!r}")
        if self.attention not in ATTENTION_CHOICES:
            raise ValueError(
                f"TransformerConfig.attention must be one of {list(ATTENTION_CHOICES)}, "
                f"got {self.attention!r}"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    def replace(self, **changes: Any) -> TransformerConfig:
        """Return a copy with ``changes`` applied (validated; unknown fields raise)."""
        current = {**self.to_dict(), "attention": self.attention}
        return self.from_dict({**current, **changes}, source="TransformerConfig.replace")

    def to_dict(self) -> dict[str, Any]:
        """The architecture as a plain dict, e.g. for checkpoint metadata (no ``attention``)."""
        data = dataclasses.asdict(self)
        del data["attention"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> TransformerConfig:
        """Build from a mapping; unknown or missing keys raise ``ValueError`` naming ``source``."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(
                f"{source}: unknown TransformerConfig field(s) {unknown}; known: {sorted(fields)}"
            )
        required = {n for n, f in fields.items() if f.default is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"{source}: missing TransformerConfig field(s) {missing}")
        return cls(**dict(data))
