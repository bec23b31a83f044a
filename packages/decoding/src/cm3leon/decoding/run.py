"""One generation run from a :class:`GenerateConfig`: load, generate, write.

Used by ``cm3leon generate`` and by the ``generate`` runner of ``cm3leon ablate``
(:func:`run_generate`: one generation run per matrix cell, samples into
``<run_dir>/samples``; the ``text_to_image`` runner of cm3leon-eval scores the
``manifest.json`` it returns).  A matrix over ``decoding.image.pipelines`` /
``retrieval.k`` / ``num_candidates`` reproduces Figure 4 and Table 1's ablations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from cm3leon.core.config import build_component, config_to_yaml
from cm3leon.core.io import atomic_directory, atomic_write_json, atomic_write_text
from cm3leon.decoding.config import GenerateConfig, read_prompts
from cm3leon.decoding.generator import CM3LeonGenerator
from cm3leon.decoding.outputs import write_results
from cm3leon.decoding.prompts import Prompt

__all__ = ["build_generator", "run_generate", "run_generation"]

log = logging.getLogger(__name__)

#: ``model.dtype`` / ``--dtype`` values: the weights (and KV cache) are cast to it on load.
#: bf16 halves the bytes a memory-bound decode step moves; logits are upcast to fp32 in
#: the processors either way.
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16,
           "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_generator(cfg: GenerateConfig, *, registries: Any = None) -> CM3LeonGenerator:
    """Model export + tokenizers (+ retriever, + CLIP re-ranker) of ``cfg``.

    Raises:
        ValueError: unknown dtype, missing files, tokenizers not matching the export.
        cm3leon.core.config.ConfigError: unknown retriever / encoder names or options.
    """
    from cm3leon.decoding.rerank import ClipReranker

    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    if cfg.model.dtype not in _DTYPES:
        raise ValueError(f"model.dtype: unknown dtype {cfg.model.dtype!r}; known: {sorted(_DTYPES)}")
    retriever = reranker = None
    if cfg.retrieval.k > 0:
        retriever = build_component(registries.retrievers, cfg.retrieval.retriever, where="retrieval.retriever")
    if cfg.rerank.enabled:
        encoder = build_component(registries.feature_extractors, cfg.rerank.encoder, where="rerank.encoder")
        reranker = ClipReranker(encoder)
    return CM3LeonGenerator.load(
        cfg.model.export, text_tokenizer=cfg.tokenizer.text, image_tokenizer=cfg.tokenizer.image,
        device=cfg.model.device, dtype=_DTYPES[cfg.model.dtype], retriever=retriever, reranker=reranker,
    )  # fmt: skip


def run_generation(
    cfg: GenerateConfig,
    *,
    prompts: Sequence[Prompt] = (),
    overwrite: bool = False,
    progress: bool = True,
    generator: CM3LeonGenerator | None = None,
) -> dict[str, Any]:
    """Generate for ``cfg.prompts`` (JSONL) plus ``prompts`` and write ``cfg.output``.

    The output directory is filled under a temporary name and renamed when complete
    (``COMPLETE`` marker), holding ``config.yaml``, ``generate.log``, ``summary.json`` and
    the files of :func:`cm3leon.decoding.outputs.write_results`.

    Returns:
        The summary: counts, timings, generated tokens per second.

    Raises:
        ValueError: no prompts, bad prompt files, bad options (see :meth:`CM3LeonGenerator.generate`).
        FileExistsError: the output exists and ``overwrite`` is false.
    """
    all_prompts = list(read_prompts(cfg.prompts) if cfg.prompts else []) + list(prompts)
    if not all_prompts:
        raise ValueError("no prompts: give prompts (a JSONL file) in the config or --prompt TEXT")
    gen = generator or build_generator(cfg)
    with atomic_directory(cfg.output, overwrite=overwrite) as tmp:
        handler = logging.FileHandler(tmp / "generate.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("cm3leon")
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(min(old_level or logging.WARNING, logging.INFO))
        try:
            atomic_write_text(tmp / "config.yaml", config_to_yaml(cfg))
            log.info("generating %d prompt(s) x %d candidate(s)", len(all_prompts), cfg.num_candidates)
            start = time.perf_counter()
            results = gen.generate(
                all_prompts, cfg.decoding, num_candidates=cfg.num_candidates, k=cfg.retrieval.k,
                seed=cfg.seed, batch_size=cfg.batch_size, progress=progress,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            counts = write_results(results, tmp)
            tokens = sum(len(c.tokens) for r in results for c in r.candidates)
            summary = {
                **counts,
                "num_candidates": cfg.num_candidates,
                "dtype": str(next(gen.model.parameters()).dtype).removeprefix("torch."),
                "seconds": seconds,
                "generated_tokens": tokens,
                "tokens_per_second": tokens / seconds if seconds > 0 else None,
                "output": str(Path(cfg.output)),
            }
            atomic_write_json(tmp / "summary.json", summary)
            log.info("done in %.1f s (%d tokens)", seconds, tokens)
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            handler.close()
    return summary


def run_generate(cfg: GenerateConfig, run_dir: Path) -> dict[str, Any]:
    """The ``generate`` runner: generate with ``cfg`` into ``run_dir/samples`` (its ``output`` is ignored).

    Returns the run summary plus ``manifest``, the path of ``manifest.json`` (None if absent).
    """
    out = Path(run_dir) / "samples"
    summary = run_generation(replace(cfg, output=str(out)), overwrite=True, progress=False)
    manifest = out / "manifest.json"
    return {**summary, "manifest": str(manifest) if manifest.is_file() else None}
