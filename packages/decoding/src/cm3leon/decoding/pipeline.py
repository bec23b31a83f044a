"""Strategy pipelines built by name from the ``decoding`` registry.

A :class:`Pipeline` is ``guidance -> processors -> selector``; a generation may use
several at once, each deciding a share of the N candidates of every prompt
(:func:`split_candidates`).  Pieces are looked up in
``get_registries().decoding`` and their options validated against the spec's options
dataclass, so a misspelled name, an unknown option or a value of the wrong type fails
before any model work, naming the config path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cm3leon.core.registry import DecodingSpec, UnknownComponentError, resolve_object
from cm3leon.decoding.options import (
    DecodingOptionsError,
    PipelineConfig,
    StrategyConfig,
    check_number,
    make_options,
)
from cm3leon.decoding.processors import DecodeState, Guidance, LogitsProcessor, TokenSelector

__all__ = [
    "STREAM_ORDER",
    "Pipeline",
    "build_pipeline",
    "build_pipelines",
    "build_strategy",
    "split_candidates",
    "stream_union",
]

#: Canonical order of the token streams in a batch (others follow, sorted).
STREAM_ORDER = ("cond", "no_text", "no_image", "uncond")


def _registry(registries: Any = None) -> Any:
    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    return registries.decoding


def build_strategy(
    cfg: StrategyConfig | dict[str, Any],
    *,
    kind: str,
    where: str,
    registries: Any = None,
) -> Any:
    """Build one registered piece (``kind`` = ``"processor"`` or ``"selector"``).

    Raises:
        DecodingOptionsError: unknown name (listing the registered pieces of that kind),
            a piece of the other kind, unknown options or invalid values; named by ``where``.
    """
    name = cfg["name"] if isinstance(cfg, dict) else cfg.name
    options = cfg.get("options", {}) if isinstance(cfg, dict) else cfg.options
    registry = _registry(registries)
    if not isinstance(name, str):
        raise DecodingOptionsError(f"{where}.name must be a string, got {name!r}")
    try:
        spec: DecodingSpec = registry.get(name, where=f"{where}.name")
    except UnknownComponentError:
        known = sorted(r.spec.name for r in registry if r.spec.kind == kind)
        raise DecodingOptionsError(
            f"{where}.name: unknown decoding {kind} {name!r}; registered: {', '.join(known) or 'none'}"
        ) from None
    if spec.kind != kind:
        raise DecodingOptionsError(f"{where}.name: {name!r} is a decoding {spec.kind}, not a {kind}")
    options_type = resolve_object(spec.options) if spec.options is not None else None
    opts = make_options(options_type, dict(options or {}), where=f"{where}.options ({name})")
    return spec.load()(opts) if opts is not None else spec.load()()


@dataclass
class Pipeline:
    """``guidance -> processors -> selector`` for a share of the candidates.

    Attributes:
        guidance: combines this pipeline's streams (``guidance.streams``).
        processors: per-row processors, applied in order.
        selector: picks a column per row.
        weight: share of the candidates.
        name: for reports (``"cfg+temperature+top_p/sample"``).
    """

    guidance: Guidance
    processors: list[LogitsProcessor]
    selector: TokenSelector
    weight: int = 1
    name: str = ""

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.guidance.streams)

    def scores(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Guidance then processors: ``(S, B, V) -> (B, V)``."""
        out = self.guidance(logits, state)
        for processor in self.processors:
            out = processor(out, state)
        return out

    def __call__(
        self, logits: torch.Tensor, state: DecodeState, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Chosen local columns ``(B,)`` for stream logits ``(S, B, V)``."""
        return self.selector(self.scores(logits, state), generator)


def build_pipeline(cfg: PipelineConfig | dict[str, Any], *, where: str, registries: Any = None) -> Pipeline:
    """Build a :class:`Pipeline` from its config (see :func:`build_strategy` for errors)."""
    if isinstance(cfg, dict):
        cfg = PipelineConfig(
            guidance=StrategyConfig(**cfg.get("guidance", {"name": "none"})),
            processors=[StrategyConfig(**p) for p in cfg.get("processors", [])],
            selector=StrategyConfig(**cfg.get("selector", {"name": "sample"})),
            weight=cfg.get("weight", 1),
        )
    weight = check_number(where, "weight", cfg.weight, integer=True, low=1)
    guidance = build_strategy(cfg.guidance, kind="processor", where=f"{where}.guidance", registries=registries)
    streams = getattr(guidance, "streams", None)
    if not isinstance(streams, tuple) or not streams or not all(isinstance(s, str) for s in streams):
        raise DecodingOptionsError(
            f"{where}.guidance: {cfg.guidance.name!r} is not a guidance processor "
            "(it has no 'streams' tuple naming the token streams it combines)"
        )
    processors = [
        build_strategy(p, kind="processor", where=f"{where}.processors[{i}]", registries=registries)
        for i, p in enumerate(cfg.processors)
    ]
    selector = build_strategy(cfg.selector, kind="selector", where=f"{where}.selector", registries=registries)
    name = "+".join([cfg.guidance.name, *(p.name for p in cfg.processors)]) + f"/{cfg.selector.name}"
    return Pipeline(guidance, processors, selector, weight=int(weight), name=name)


def build_pipelines(
    configs: Sequence[PipelineConfig | dict[str, Any]], *, where: str, registries: Any = None
) -> list[Pipeline]:
    """Build every pipeline of a stage (at least one)."""
    if not configs:
        raise DecodingOptionsError(f"{where}: needs at least one pipeline")
    return [build_pipeline(c, where=f"{where}[{i}]", registries=registries) for i, c in enumerate(configs)]


def stream_union(pipelines: Sequence[Pipeline]) -> tuple[str, ...]:
    """Every stream some pipeline needs, ``cond`` first, in :data:`STREAM_ORDER`."""
    needed = {"cond"} | {s for p in pipelines for s in p.streams}
    known = [s for s in STREAM_ORDER if s in needed]
    return tuple(known + sorted(needed - set(STREAM_ORDER)))


def split_candidates(num_candidates: int, weights: Sequence[int]) -> list[int]:
    """Pipeline index of each candidate: shares proportional to ``weights`` (largest remainder).

    ``split_candidates(8, [1, 1]) == [0, 0, 0, 0, 1, 1, 1, 1]``; candidates of one
    pipeline are contiguous.  Raises ``ValueError`` if a pipeline would get no candidate.
    """
    total = sum(weights)
    exact = [num_candidates * w / total for w in weights]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: num_candidates - sum(counts)]:
        counts[i] += 1
    if min(counts) == 0:
        raise ValueError(
            f"{num_candidates} candidate(s) cannot be shared by {len(weights)} pipelines with "
            f"weights {list(weights)}: some pipeline would decode none (raise num_candidates)"
        )
    return [i for i, c in enumerate(counts) for _ in range(c)]
