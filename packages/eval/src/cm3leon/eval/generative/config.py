"""Config sections shared by the generation-driven protocols, and the decoding presets.

Every protocol config (``TextToImageEvalConfig``, ``CaptioningEvalConfig``, ...) nests
these sections, so the same dotted keys work for every protocol and in ablation matrices::

    model:     {export, text_tokenizer, image_tokenizer, device, dtype}
    decoding:  {strategy, cfg_scale, temperature, top_p, cd_k, cd_alpha, image_scale,
                text_scale, max_new_tokens, pipelines}
    retrieval: {k, retriever, bank, options}
    clip:      {encoder, options}

:func:`generate_config` turns them into the config of the registered generator runner
(cm3leon-decoding's ``generate``; schema ``GenerateConfig``), whose decoding pipelines
come from :data:`STRATEGIES`:

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

``decoding.pipelines`` (a list in cm3leon-decoding's ``PipelineConfig`` layout) replaces the
preset entirely when it is not empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from cm3leon.core.config import ConfigError

__all__ = [
    "STRATEGIES",
    "ClipChoice",
    "DecodingChoice",
    "FidChoice",
    "ModelSource",
    "RetrievalChoice",
    "generate_config",
    "pipelines_for",
]


@dataclass
class ModelSource:
    """The checkpoint under evaluation.

    Attributes:
        export: a ``cm3leon train export`` directory (or its ``model.safetensors``).
        text_tokenizer: registered ``NAME``, ``NAME:DIR`` or a saved tokenizer ``DIR``.
        image_tokenizer: same, for the VQ image tokenizer (needed by image prompts/outputs).
        device: torch device of the model.
        dtype: ``float32``, ``bfloat16``, ...
    """

    export: str = MISSING
    text_tokenizer: str = MISSING
    image_tokenizer: str | None = None
    device: str = "cpu"
    dtype: str = "float32"


def _check_positive(where: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{where} must be > 0, got {value!r}")


@dataclass
class DecodingChoice:
    """How the protocol's output spans are decoded (see the module docstring)."""

    strategy: str = "top_p"
    cfg_scale: float = 3.0
    temperature: float = 1.0
    top_p: float = 0.9
    cd_k: int = 5
    cd_alpha: float = 0.5
    image_scale: float = 1.5
    text_scale: float = 7.5
    max_new_tokens: int = 32
    pipelines: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.pipelines and self.strategy not in STRATEGIES:
            raise ConfigError(
                f"decoding.strategy: unknown strategy {self.strategy!r}; known: "
                f"{', '.join(STRATEGIES)} (or give decoding.pipelines)"
            )
        _check_positive("decoding.temperature", self.temperature)
        _check_positive("decoding.max_new_tokens", self.max_new_tokens)


@dataclass
class RetrievalChoice:
    """``k`` retrieved documents in front of every prompt, by a registered retriever.

    Attributes:
        k: 0, 1, 2, ... (Table 1).
        retriever: registered retriever name (cm3leon-retrieval: ``clip``, ``bm25``).
        bank: the retriever's memory bank directory (its ``bank`` option).
        options: further keyword options of the retriever factory.
    """

    k: int = 0
    retriever: str = "clip"
    bank: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ConfigError(f"retrieval.k must be >= 0, got {self.k}")


@dataclass
class ClipChoice:
    """The CLIP encoder used for re-ranking, CLIP score and CLIP-feature FID.

    Attributes:
        encoder: a registered DocumentEncoder (cm3leon-retrieval's ``clip-image``) or a
            ``"module:factory"`` string.
        options: its options, e.g. ``{path: runs/demo/clip/encoder}``.
    """

    encoder: str = "clip-image"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class FidChoice:
    """FID features: ``auto`` = ``inception`` when a local weights file is configured
    (``weights_path`` or ``$CM3LEON_FID_INCEPTION``), else ``clip`` (the CLIP encoder);
    or any registered feature extractor name with ``options``."""

    features: str = "auto"
    weights_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32


def _stage(d: DecodingChoice) -> dict[str, Any]:
    return {
        "cfg": {"name": "cfg", "options": {"scale": d.cfg_scale}},
        "cdk": {"name": "cdk", "options": {"k": d.cd_k, "alpha": d.cd_alpha}},
        "dual": {
            "name": "dual_cfg",
            "options": {"image_scale": d.image_scale, "text_scale": d.text_scale},
        },
        "temperature": {"name": "temperature", "options": {"temperature": d.temperature}},
        "top_p": {"name": "top_p", "options": {"p": d.top_p}},
    }


def _pipe(guidance: Any, processors: list[Any], selector: str) -> dict[str, Any]:
    guide = guidance if isinstance(guidance, dict) else {"name": guidance}
    return {"guidance": guide, "processors": processors, "selector": {"name": selector}}


def _cfg(d: DecodingChoice) -> list[dict[str, Any]]:
    s = _stage(d)
    return [_pipe(s["cfg"], [s["temperature"]], "sample")]


def _top_p(d: DecodingChoice) -> list[dict[str, Any]]:
    s = _stage(d)
    return [_pipe(s["cfg"], [s["temperature"], s["top_p"]], "sample")]


def _cd_k(d: DecodingChoice) -> list[dict[str, Any]]:
    s = _stage(d)
    return [_pipe(s["cdk"], [s["temperature"]], "sample")]


def _dual(d: DecodingChoice) -> list[dict[str, Any]]:
    s = _stage(d)
    return [_pipe(s["dual"], [s["temperature"], s["top_p"]], "sample")]


#: Strategy name -> pipelines (cm3leon-decoding's ``PipelineConfig`` layout).
STRATEGIES: dict[str, Callable[[DecodingChoice], list[dict[str, Any]]]] = {
    "cfg": _cfg,
    "top_p": _top_p,
    "cd_k": _cd_k,
    "cd_k_top_p": lambda d: _top_p(d) + _cd_k(d),
    "greedy": lambda d: [_pipe("none", [], "greedy")],
    "cfg_greedy": lambda d: [_pipe(_stage(d)["cfg"], [], "greedy")],
    "dual_cfg": _dual,
}


def pipelines_for(decoding: DecodingChoice) -> list[dict[str, Any]]:
    """The decoding pipelines of ``decoding`` (its ``pipelines`` if given, else the preset)."""
    if decoding.pipelines:
        return [dict(p) for p in decoding.pipelines]
    return STRATEGIES[decoding.strategy](decoding)


def generate_config(
    model: ModelSource,
    decoding: DecodingChoice,
    retrieval: RetrievalChoice,
    *,
    output: str,
    num_candidates: int,
    seed: int,
    batch_size: int,
    rerank: ClipChoice | None = None,
) -> dict[str, Any]:
    """The generator runner's config (``GenerateConfig`` layout) for one protocol.

    ``output`` is ``"image"`` or ``"text"``: the modality whose pipelines ``decoding``
    sets (the other keeps the generator's defaults).  ``rerank`` turns on the generator's
    CLIP re-ranking with that encoder (candidates written best first).
    """
    if output not in ("image", "text"):
        raise ValueError(f"output must be 'image' or 'text', got {output!r}")
    stage: dict[str, Any] = {"pipelines": pipelines_for(decoding)}
    if output == "text":
        stage["max_new_tokens"] = decoding.max_new_tokens
    options = dict(retrieval.options)
    if retrieval.bank is not None:
        options["bank"] = retrieval.bank
    return {
        "model": {"export": model.export, "device": model.device, "dtype": model.dtype},
        "tokenizer": {"text": model.text_tokenizer, "image": model.image_tokenizer},
        "decoding": {output: stage},
        "num_candidates": num_candidates,
        "seed": seed,
        "batch_size": batch_size,
        "retrieval": {
            "k": retrieval.k,
            "retriever": {"name": retrieval.retriever, "options": options},
        },
        "rerank": {
            "enabled": rerank is not None,
            "encoder": {
                "name": rerank.encoder if rerank else "clip-image",
                "options": dict(rerank.options) if rerank else {},
            },
        },
    }
