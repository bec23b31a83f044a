"""The paper's decoding strategies as named presets over the registered pieces.

A :class:`DecodingPreset` names a strategy and the handful of numbers it needs; it is the
``decoding:`` section of every evaluation config (cm3leon-eval), so the same dotted keys
work in protocol configs and ablation matrices::

    decoding: {strategy, cfg_scale, temperature, top_p, cd_k, cd_alpha, image_scale,
               text_scale, max_new_tokens, pipelines}

:func:`preset_pipelines` turns it into typed :class:`~cm3leon.decoding.options.PipelineConfig`
lists and :func:`generation_options` into the :class:`GenerationOptions` of a
:class:`~cm3leon.decoding.config.GenerateConfig` (the ``generate`` runner's schema):

=============  ==========================================================================
strategy       pipelines (registered cm3leon-decoding pieces)
=============  ==========================================================================
``cfg``        CFG (eq. 2, ``cfg_scale``) -> temperature -> sample (tempered sampling)
``top_p``      CFG -> temperature -> top-p (``top_p``) -> sample (the paper's "TopP", which
               it always pairs with CFG; ``cfg_scale: 1`` is top-p without guidance)
``cd_k``       CD-K (eq. 3, ``cd_k``, ``cd_alpha``) -> temperature -> sample
``cd_k_top_p`` half the candidates ``top_p``, half ``cd_k`` (Figure 4, "combined")
``greedy``     conditional stream only, argmax (the default for text outputs)
``cfg_greedy`` CFG -> argmax
``dual_cfg``   editing guidance ``u + s_I (i - u) + s_T (c - i)`` (``image_scale``,
               ``text_scale``; §4.1: 1.5 and 7.5) -> temperature -> top-p -> sample
=============  ==========================================================================

``pipelines`` (a list of :class:`PipelineConfig`) replaces the preset entirely when it is
not empty.  Validation errors name the keys as they appear under ``decoding:``.
This module imports neither torch nor the engine.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from cm3leon.core.config import ConfigError
from cm3leon.decoding.options import GenerationOptions, PipelineConfig, StrategyConfig

__all__ = [
    "PRESETS",
    "DecodingPreset",
    "generation_options",
    "preset_pipelines",
]


@dataclass
class DecodingPreset:
    """How output spans are decoded: a named strategy and its numbers (module docstring).

    Attributes:
        strategy: a key of :data:`PRESETS`.
        cfg_scale: CFG ``α_c`` (eq. 2) of ``cfg``, ``top_p``, ``cfg_greedy``.
        temperature: logits temperature of the sampling strategies (> 0).
        top_p: nucleus mass of ``top_p`` and ``dual_cfg``.
        cd_k: CD-K's ``k`` (eq. 3).
        cd_alpha: CD-K's ``α``.
        image_scale: dual guidance's image scale (§4.1: 1.5).
        text_scale: dual guidance's text scale (§4.1: 7.5).
        max_new_tokens: length limit of text outputs.
        pipelines: explicit pipelines; when not empty they replace the preset.
    """

    strategy: str = "top_p"
    cfg_scale: float = 3.0
    temperature: float = 1.0
    top_p: float = 0.9
    cd_k: int = 5
    cd_alpha: float = 0.5
    image_scale: float = 1.5
    text_scale: float = 7.5
    max_new_tokens: int = 32
    pipelines: list[PipelineConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.pipelines and self.strategy not in PRESETS:
            raise ConfigError(
                f"decoding.strategy: unknown strategy {self.strategy!r}; known: "
                f"{', '.join(PRESETS)} (or give decoding.pipelines)"
            )
        for name in ("temperature", "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"decoding.{name} must be > 0, got {getattr(self, name)!r}")
        self.pipelines = [_as_pipeline(p, i) for i, p in enumerate(self.pipelines)]


def _as_pipeline(value: PipelineConfig | Mapping, index: int) -> PipelineConfig:
    """A pipeline given as a mapping (Python callers) -> :class:`PipelineConfig`."""
    if isinstance(value, PipelineConfig):
        return value
    from omegaconf import OmegaConf

    from cm3leon.core.config import merge_config

    node = merge_config(PipelineConfig, dict(value), source=f"decoding.pipelines.{index}")
    return OmegaConf.to_object(node)  # type: ignore[return-value]


def _pipe(guidance: StrategyConfig, processors: list[StrategyConfig], selector: str) -> PipelineConfig:
    return PipelineConfig(guidance=guidance, processors=processors, selector=StrategyConfig(selector))


def _cfg(d: DecodingPreset) -> StrategyConfig:
    return StrategyConfig("cfg", {"scale": d.cfg_scale})


def _temperature(d: DecodingPreset) -> StrategyConfig:
    return StrategyConfig("temperature", {"temperature": d.temperature})


def _nucleus(d: DecodingPreset) -> StrategyConfig:
    return StrategyConfig("top_p", {"p": d.top_p})


def _top_p(d: DecodingPreset) -> list[PipelineConfig]:
    return [_pipe(_cfg(d), [_temperature(d), _nucleus(d)], "sample")]


def _cd_k(d: DecodingPreset) -> list[PipelineConfig]:
    cdk = StrategyConfig("cdk", {"k": d.cd_k, "alpha": d.cd_alpha})
    return [_pipe(cdk, [_temperature(d)], "sample")]


def _dual_cfg(d: DecodingPreset) -> list[PipelineConfig]:
    dual = StrategyConfig("dual_cfg", {"image_scale": d.image_scale, "text_scale": d.text_scale})
    return [_pipe(dual, [_temperature(d), _nucleus(d)], "sample")]


#: Strategy name -> its pipelines for a preset's numbers.
PRESETS: dict[str, Callable[[DecodingPreset], list[PipelineConfig]]] = {
    "cfg": lambda d: [_pipe(_cfg(d), [_temperature(d)], "sample")],
    "top_p": _top_p,
    "cd_k": _cd_k,
    "cd_k_top_p": lambda d: _top_p(d) + _cd_k(d),
    "greedy": lambda d: [_pipe(StrategyConfig("none"), [], "greedy")],
    "cfg_greedy": lambda d: [_pipe(_cfg(d), [], "greedy")],
    "dual_cfg": _dual_cfg,
}


def preset_pipelines(preset: DecodingPreset) -> list[PipelineConfig]:
    """The pipelines of ``preset``: its explicit ``pipelines`` (copied) if any, else the
    strategy's."""
    if preset.pipelines:
        return copy.deepcopy(list(preset.pipelines))
    return PRESETS[preset.strategy](preset)


def generation_options(preset: DecodingPreset, output: Literal["image", "text"]) -> GenerationOptions:
    """:class:`GenerationOptions` decoding ``output`` spans with ``preset``.

    The other modality keeps :class:`GenerationOptions`' defaults; text outputs take
    ``max_new_tokens`` from the preset.

    Raises:
        ValueError: ``output`` is neither ``"image"`` nor ``"text"``.
    """
    if output == "image":
        return GenerationOptions(image=GenerationOptions.Image(pipelines=preset_pipelines(preset)))
    if output == "text":
        text = GenerationOptions.Text(
            pipelines=preset_pipelines(preset), max_new_tokens=preset.max_new_tokens
        )
        return GenerationOptions(text=text)
    raise ValueError(f"output must be 'image' or 'text', got {output!r}")
