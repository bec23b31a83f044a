"""Typed options of every decoding piece, and of a whole generation.

Two levels, in the style of facebookresearch/chameleon's ``Options.Image.CFG``:

* one small frozen dataclass per registered strategy piece (``CFGOptions(scale=3.0)``,
  ``TopPOptions(p=0.9)``, ...), validated on construction: a value of the wrong type or
  out of range raises :class:`DecodingOptionsError` naming the option;
* :class:`GenerationOptions` nests them per output modality::

      GenerationOptions.Image            # how image spans are decoded
          .pipelines[i].guidance          # StrategyConfig: name + options (cfg, cdk, dual_cfg, none)
          .pipelines[i].processors        # [temperature, top_k, top_p, ...]
          .pipelines[i].selector          # sample | greedy
          .pipelines[i].weight            # share of the N candidates (CD-K + top-p mixes)
      GenerationOptions.Text             # how text spans are decoded (+ max_new_tokens)

Strategy pieces are chosen by registered name (``cm3leon_register_decoding``), so a
third-party processor is used exactly like a built-in one.  These dataclasses double as
the OmegaConf schema of ``configs/generate/*.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CDKOptions",
    "CFGOptions",
    "DecodingOptionsError",
    "DualCFGOptions",
    "GenerationOptions",
    "GreedyOptions",
    "NoGuidanceOptions",
    "PipelineConfig",
    "SampleOptions",
    "StrategyConfig",
    "TemperatureOptions",
    "TopKOptions",
    "TopPOptions",
    "check_number",
    "make_options",
]


class DecodingOptionsError(ValueError):
    """An invalid decoding option: wrong type, out of range, or not accepted (named)."""


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float | int:
    """Return ``value`` if it is a real number (an int if ``integer``) inside the bounds.

    Raises:
        DecodingOptionsError: naming ``owner.name``, the value and its type.
    """
    where = f"{owner}.{name}"
    kind = "an integer" if integer else "a real number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DecodingOptionsError(f"{where} must be {kind}, got {value!r} ({type(value).__name__})")
    if integer and not isinstance(value, numbers.Integral):
        raise DecodingOptionsError(f"{where} must be {kind}, got {value!r} ({type(value).__name__})")
    if not math.isfinite(float(value)):
        raise DecodingOptionsError(f"{where} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise DecodingOptionsError(f"{where} must be {bound}, got {value!r}")
    if high is not None and value > high:
        raise DecodingOptionsError(f"{where} must be <= {high}, got {value!r}")
    return int(value) if integer else float(value)


# ------------------------------------------------------------- piece options
@dataclass(frozen=True)
class NoGuidanceOptions:
    """``none``: decode the conditional stream alone (no options)."""


@dataclass(frozen=True)
class CFGOptions:
    """``cfg``: classifier-free guidance, eq. 2: ``u + scale * (c - u)`` on the logits.

    Attributes:
        scale: ``α_c``; 1 = conditional logits only, 0 = unconditional only (paper: 3-6).
    """

    scale: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_number("cfg", "scale", self.scale, low=0.0))


@dataclass(frozen=True)
class CDKOptions:
    """``cdk``: contrastive decoding top-K, eq. 3.

    Attributes:
        k: the candidate threshold uses the k-th largest expert probability
            (``k=1`` is plain contrastive decoding, Li et al. 2022).
        alpha: keep tokens with ``p_exp >= alpha * kmax_k(p_exp)``; in ``(0, 1]``.
    """

    k: int = 5
    alpha: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", check_number("cdk", "k", self.k, integer=True, low=1))
        object.__setattr__(
            self, "alpha", check_number("cdk", "alpha", self.alpha, low=0.0, high=1.0, low_open=True)
        )


@dataclass(frozen=True)
class DualCFGOptions:
    """``dual_cfg``: separate image and text guidance (§4.1, InstructPix2Pix).

    ``u + image_scale * (i - u) + text_scale * (c - i)`` with ``c`` the full prompt, ``i``
    the prompt with its text conditions masked and ``u`` with every condition masked.

    Attributes:
        image_scale: the paper's image CFG for editing (1.5).
        text_scale: the paper's text CFG for editing (7.5).
    """

    image_scale: float = 1.5
    text_scale: float = 7.5

    def __post_init__(self) -> None:
        for name in ("image_scale", "text_scale"):
            object.__setattr__(self, name, check_number("dual_cfg", name, getattr(self, name), low=0.0))


@dataclass(frozen=True)
class TemperatureOptions:
    """``temperature``: divide the logits by ``temperature`` (> 0)."""

    temperature: float = 1.0

    def __post_init__(self) -> None:
        value = check_number("temperature", "temperature", self.temperature, low=0.0, low_open=True)
        object.__setattr__(self, "temperature", value)


@dataclass(frozen=True)
class TopKOptions:
    """``top_k``: keep the ``k`` largest logits per row."""

    k: int = 50

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", check_number("top_k", "k", self.k, integer=True, low=1))


@dataclass(frozen=True)
class TopPOptions:
    """``top_p``: nucleus filtering, keep the smallest top set with mass >= ``p``."""

    p: float = 0.9
    min_keep: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_number("top_p", "p", self.p, low=0.0, high=1.0, low_open=True))
        object.__setattr__(self, "min_keep", check_number("top_p", "min_keep", self.min_keep, integer=True, low=1))


@dataclass(frozen=True)
class GreedyOptions:
    """``greedy``: argmax (no options)."""


@dataclass(frozen=True)
class SampleOptions:
    """``sample``: draw from ``softmax(logits)`` with the run's ``torch.Generator``."""


def make_options(options_type: type | None, values: dict[str, Any] | None, *, where: str) -> Any:
    """Build ``options_type(**values)``; unknown keys and bad values raise naming ``where``.

    Raises:
        DecodingOptionsError: unknown option names (listing the accepted ones) or an invalid
            value (the dataclass's own check, prefixed with ``where``).
    """
    values = dict(values or {})
    if options_type is None:
        if values:
            raise DecodingOptionsError(f"{where}: takes no options, got {sorted(values)}")
        return None
    accepted = [f.name for f in dataclasses.fields(options_type)]
    unknown = sorted(set(values) - set(accepted))
    if unknown:
        raise DecodingOptionsError(
            f"{where}: unknown option(s) {unknown}; accepted: {', '.join(accepted) or 'none'}"
        )
    try:
        return options_type(**values)
    except DecodingOptionsError as err:
        raise DecodingOptionsError(f"{where}: {err}") from None


# --------------------------------------------------------- generation options
@dataclass
class StrategyConfig:
    """A registered strategy piece by name, with its options (validated when built)."""

    name: str = "none"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """One way of choosing a token: guidance -> processors (in order) -> selector.

    Attributes:
        guidance: how the streams are combined (``none``, ``cfg``, ``cdk``, ``dual_cfg``).
        processors: per-row logits processors applied after guidance, in order.
        selector: ``sample`` or ``greedy``.
        weight: share of the candidates decoded with this pipeline when several are
            given (e.g. 4 CFG + top-p and 4 CD-K candidates out of 8, Figure 4).
    """

    guidance: StrategyConfig = field(default_factory=StrategyConfig)
    processors: list[StrategyConfig] = field(default_factory=list)
    selector: StrategyConfig = field(default_factory=lambda: StrategyConfig("sample"))
    weight: int = 1


def _cfg_top_p() -> list[PipelineConfig]:
    return [
        PipelineConfig(
            guidance=StrategyConfig("cfg", {"scale": 3.0}),
            processors=[StrategyConfig("temperature", {"temperature": 1.0}), StrategyConfig("top_p", {"p": 0.9})],
        )
    ]


def _greedy() -> list[PipelineConfig]:
    return [PipelineConfig(selector=StrategyConfig("greedy"))]


@dataclass
class GenerationOptions:
    """How images and text are decoded.  Defaults: CFG 3 + top-p 0.9 images, greedy text.

    Attributes:
        image: options of image spans.
        text: options of text spans.
        retrieved_in_uncond: keep retrieved documents in the unconditional streams
            (eq. 1 masks the prompt; the retrieved context stays unless this is false).
    """

    @dataclass
    class Image:
        """Image spans: exactly the tokenizer's number of image ids, then ``<break>``."""

        pipelines: list[PipelineConfig] = field(default_factory=_cfg_top_p)

    @dataclass
    class Text:
        """Text spans: stop at ``<break>``, ``<eos>``, an ``<infill:i>`` or ``max_new_tokens``."""

        pipelines: list[PipelineConfig] = field(default_factory=_greedy)
        max_new_tokens: int = 32

    image: Image = field(default_factory=Image)
    text: Text = field(default_factory=Text)
    retrieved_in_uncond: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationOptions:
        """Build from a plain mapping (e.g. YAML) validated by OmegaConf's structured schema.

        Raises:
            cm3leon.core.config.ConfigError: unknown keys or wrong types, naming the key.
        """
        from omegaconf import OmegaConf

        from cm3leon.core.config import merge_config

        cfg = merge_config(cls, dict(data or {}), source="generation options")
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
