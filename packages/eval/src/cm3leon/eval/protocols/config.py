"""Config sections shared by the protocol modules, and the generator config they build.

Every protocol config (``TextToImageConfig``, ``CaptioningConfig``, ...) nests these
sections, so the same dotted keys work for every protocol and in ablation matrices::

    model:     {export, text_tokenizer, image_tokenizer, device, dtype}
    decoding:  {strategy, cfg_scale, temperature, top_p, cd_k, cd_alpha, image_scale,
                text_scale, max_new_tokens, pipelines}
    retrieval: {k, retriever, bank, options}
    clip:      {encoder, options}

``decoding`` is cm3leon-decoding's :class:`~cm3leon.decoding.presets.DecodingPreset` (the
paper's strategies: ``cfg``, ``top_p``, ``cd_k``, ``cd_k_top_p``, ``greedy``,
``cfg_greedy``, ``dual_cfg``; see :mod:`cm3leon.decoding.presets`).
:func:`generate_config` builds the typed :class:`~cm3leon.decoding.config.GenerateConfig`
of the generator runner (cm3leon-decoding's ``generate``) from these sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cm3leon.core.config import ConfigError
from cm3leon.decoding.presets import DecodingPreset, generation_options

if TYPE_CHECKING:
    from cm3leon.decoding.config import GenerateConfig

__all__ = [
    "ClipChoice",
    "FidChoice",
    "ModelSource",
    "RetrievalChoice",
    "generate_config",
]


@dataclass
class ModelSource:
    """The checkpoint under evaluation (not needed when scoring existing predictions).

    Attributes:
        export: a ``cm3leon train export`` directory (or its ``model.safetensors``);
            required to generate.
        text_tokenizer: registered ``NAME``, ``NAME:DIR`` or a saved tokenizer ``DIR``;
            required to generate.
        image_tokenizer: same, for the VQ image tokenizer (needed by image prompts/outputs).
        device: torch device of the model.
        dtype: ``float32``, ``bfloat16``, ...
    """

    export: str | None = None
    text_tokenizer: str | None = None
    image_tokenizer: str | None = None
    device: str = "cpu"
    dtype: str = "float32"


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


def generate_config(
    model: ModelSource,
    decoding: DecodingPreset,
    retrieval: RetrievalChoice,
    *,
    output: Literal["image", "text"],
    num_candidates: int,
    seed: int,
    batch_size: int,
    rerank: ClipChoice | None = None,
) -> GenerateConfig:
    """The generator runner's typed config for one protocol (``prompts``/``output`` unset).

    ``output`` is ``"image"`` or ``"text"``: the modality whose pipelines ``decoding``
    sets (the other keeps the generator's defaults).  ``rerank`` turns on the generator's
    CLIP re-ranking with that encoder (candidates written best first).

    Raises:
        ValueError: ``output`` is neither ``"image"`` nor ``"text"``.
    """
    from cm3leon.core.config import ComponentConfig
    from cm3leon.decoding import config as gen

    options = dict(retrieval.options)
    if retrieval.bank is not None:
        options["bank"] = retrieval.bank
    return gen.GenerateConfig(
        model=gen.ModelSource(export=model.export, device=model.device, dtype=model.dtype),
        tokenizer=gen.TokenizerSources(text=model.text_tokenizer, image=model.image_tokenizer),
        decoding=generation_options(decoding, output),
        num_candidates=num_candidates,
        seed=seed,
        batch_size=batch_size,
        retrieval=gen.RetrievalConfig(
            k=retrieval.k, retriever=ComponentConfig(name=retrieval.retriever, options=options)
        ),
        rerank=gen.RerankConfig(
            enabled=rerank is not None,
            encoder=ComponentConfig(
                name=rerank.encoder if rerank else "clip-image",
                options=dict(rerank.options) if rerank else {},
            ),
        ),
    )
