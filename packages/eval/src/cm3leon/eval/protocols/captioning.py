"""Image captioning (paper §4.2, Table 2: MS-COCO CIDEr): the ``captioning`` runner and
``cm3leon eval captioning``.

checkpoint + COCO-captions dataset -> one caption per image -> COCO results JSON ->
CIDEr-D against every reference; next to it the retrieval-free nearest-caption baseline
(:func:`cm3leon.eval.baselines.nearest_captions` over a training split) scored the same
way.

The prompt is the fine-tuning layout: the registered SFT task ``task`` (default
``coco_captioning``) renders its Table 5 template with the caption left open, e.g.
``Describe the given picture.<mask:0> <break> [image] <break> <infill:0>`` — so the
model infills the caption after seeing the image, exactly as the CM3 objective's
task-aware option (``CM3Config.target_prob``) trained it on the task's documents, whose
target is the caption (the generator turns ``{"task", "record", "output"}`` prompt lines
into such prompts).

With ``predictions`` (a COCO results file) nothing is generated: the file is scored
(:func:`score_caption_files`, CIDEr-D against ``data.annotations``) and written to
``results.json``.

Outputs in ``run_dir``: ``generation/``, ``captions.json`` and
``baseline_captions.json`` (COCO results), ``samples.png``, ``results.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from cm3leon.core.config import ConfigError
from cm3leon.core.io import atomic_write_json
from cm3leon.decoding.presets import DecodingPreset
from cm3leon.eval.datasets import read_caption_dataset, sibling_split_file
from cm3leon.eval.formats import read_caption_references, read_caption_results
from cm3leon.eval.protocols.common import (
    file_info,
    finish,
    generation_info,
    load_rgb,
    match_ids,
    registries_or_active,
    require_model,
    save_captioned_grid,
    summary,
)
from cm3leon.eval.protocols.config import (
    ClipChoice,
    ModelSource,
    RetrievalChoice,
    generate_config,
)
from cm3leon.eval.protocols.generation import DEFAULT_GENERATOR, run_generator

__all__ = [
    "BaselineChoice",
    "CaptioningConfig",
    "CaptioningData",
    "clean_caption",
    "run_captioning",
    "score_caption_files",
]


@dataclass
class CaptioningData:
    """The evaluation split and the training split of the baseline.

    Attributes:
        annotations: COCO captions file to evaluate on (``captions_val2017.json``).
        images: its image folder (default: found next to the file).
        train_annotations: captions of the training images for the nearest-caption
            baseline (default: the ``val`` -> ``train`` sibling file, when it exists).
        train_images: their folder (default: found next to the file).
        limit: first ``limit`` images (by id).
    """

    annotations: str = MISSING
    images: str | None = None
    train_annotations: str | None = None
    train_images: str | None = None
    limit: int | None = None


@dataclass
class BaselineChoice:
    """Nearest-caption baseline: ``enabled``; images compared at ``size x size`` pixels."""

    enabled: bool = True
    size: int = 8


@dataclass
class CaptioningConfig:
    """Schema of the ``captioning`` runner and ``cm3leon eval captioning``.

    ``tokenizer`` is the CIDEr tokenisation (``ptb``: coco-caption's Stanford tokenizer,
    needs Java; ``whitespace``).  ``num_samples > 1`` with ``rerank: true`` keeps the
    caption CLIP prefers (the ``clip`` encoder).  ``predictions``: a COCO results file to
    score instead of generating; ``partial``: then score only the images it captions (a
    generated run always scores the images it generated for).
    """

    model: ModelSource = field(default_factory=ModelSource)
    data: CaptioningData = field(default_factory=CaptioningData)
    decoding: DecodingPreset = field(default_factory=lambda: DecodingPreset(strategy="greedy"))
    retrieval: RetrievalChoice = field(default_factory=RetrievalChoice)
    clip: ClipChoice = field(default_factory=ClipChoice)
    baseline: BaselineChoice = field(default_factory=BaselineChoice)
    task: str = "coco_captioning"
    output_field: str = "caption"
    tokenizer: str = "ptb"
    num_samples: int = 1
    rerank: bool = False
    seed: int = 0
    batch_size: int = 8
    grid_images: int = 16
    generator: str = DEFAULT_GENERATOR
    predictions: str | None = None
    partial: bool = False

    def __post_init__(self) -> None:
        if self.tokenizer not in ("ptb", "whitespace"):
            raise ConfigError(f"tokenizer must be 'ptb' or 'whitespace', got {self.tokenizer!r}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")


def score_caption_files(
    predictions: str | Path,
    references: str | Path,
    *,
    tokenizer: str = "ptb",
    partial: bool = False,
) -> dict[str, Any]:
    """CIDEr-D of a COCO-format results file against a references file.

    ``references``: COCO captions annotations, ``{id: [refs]}`` or ``[{image_id,
    captions}]``.  ``partial`` scores only the images that have a prediction.

    Raises:
        FormatError: malformed files, predictions without references, or (unless
            ``partial``) references without a prediction.
    """
    from cm3leon.eval.metrics.cider import score_captions

    preds, refs = read_caption_results(predictions), read_caption_references(references)
    ids = match_ids(preds, refs, "image", partial)
    result = score_captions([preds[i] for i in ids], [refs[i] for i in ids], tokenizer=tokenizer)
    return {
        "protocol": "captioning",
        "metrics": {"cider_d": result.score},
        "num_images": len(ids),
        "tokenizer": tokenizer,
        "per_image": {i: float(s) for i, s in zip(ids, result.per_item, strict=True)},
        "inputs": {"predictions": file_info(predictions), "references": file_info(references)},
    }


def clean_caption(text: str | None) -> str:
    """A generated caption span as a caption: its first line, whitespace collapsed."""
    first = (text or "").strip().split("\n", 1)[0]
    return " ".join(first.split())


def _coco_results(captions: dict[str, str]) -> list[dict[str, Any]]:
    return [{"image_id": int(i) if i.isdigit() else i, "caption": c} for i, c in captions.items()]


def _baseline(cfg: CaptioningConfig, items: list[Any], run_dir: Path) -> dict[str, Any]:
    """Score the nearest-caption baseline (or say why it was skipped)."""
    from cm3leon.eval.baselines import nearest_captions

    if not cfg.baseline.enabled:
        return {"skipped": "baseline.enabled is false"}
    train_file = cfg.data.train_annotations or sibling_split_file(cfg.data.annotations)
    if train_file is None:
        return {
            "skipped": "no training captions (data.train_annotations) to take nearest captions from"
        }
    train = read_caption_dataset(train_file, cfg.data.train_images)
    nearest = nearest_captions(
        [it.image for it in items],
        [t.image for t in train],
        [t.references[0] for t in train],
        size=cfg.baseline.size,
    )
    captions = {it.image_id: cap for it, (_, cap) in zip(items, nearest, strict=True)}
    path = atomic_write_json(run_dir / "baseline_captions.json", _coco_results(captions))
    scored = score_caption_files(path, cfg.data.annotations, tokenizer=cfg.tokenizer, partial=True)
    return {
        "cider_d": scored["metrics"]["cider_d"],
        "train_annotations": str(train_file),
        "num_train_images": len(train),
        "predictions": str(path),
        "captions": captions,
        "nearest": {
            it.image_id: train[j].image_id for it, (j, _) in zip(items, nearest, strict=True)
        },
    }


def _score_predictions(cfg: CaptioningConfig, run_dir: Path) -> dict[str, Any]:
    """Score ``cfg.predictions`` (no generation, no baseline); write ``results.json``."""
    scored = score_caption_files(
        cfg.predictions, cfg.data.annotations, tokenizer=cfg.tokenizer, partial=cfg.partial  # type: ignore[arg-type]
    )
    return summary(finish(run_dir, scored, cfg), "num_images")


def run_captioning(
    cfg: CaptioningConfig, run_dir: str | Path, *, registries: Any = None, force: bool = False
) -> dict[str, Any]:
    """Generate captions (or take ``cfg.predictions``), score CIDEr-D and the baseline; write
    ``run_dir/results.json``.

    The summary holds ``cider_d``, ``baselines.nearest_caption.cider_d``, ``num_images``
    (scoring ``predictions``: ``cider_d``, ``num_images``).
    """
    run_dir = Path(run_dir)
    if cfg.predictions is not None:
        return _score_predictions(cfg, run_dir)
    registries = registries_or_active(registries)
    require_model(
        cfg.model, image_prompts="captioning prompts hold images (VQ tokenizer needed)"
    )
    items = read_caption_dataset(cfg.data.annotations, cfg.data.images, limit=cfg.data.limit)
    entries = [
        {"id": it.image_id, "task": cfg.task, "record": {"image": str(it.image.resolve())},
         "output": cfg.output_field, "max_new_tokens": cfg.decoding.max_new_tokens}
        for it in items
    ]  # fmt: skip
    gen_cfg = generate_config(
        cfg.model, cfg.decoding, cfg.retrieval, output="text", num_candidates=cfg.num_samples,
        seed=cfg.seed, batch_size=cfg.batch_size, rerank=cfg.clip if cfg.rerank else None,
    )  # fmt: skip
    gen = run_generator(entries, gen_cfg, run_dir / "generation", runner=cfg.generator,
                        registries=registries, force=force)  # fmt: skip
    raw = {it.image_id: gen.best(it.image_id).get("text") or "" for it in items}
    captions = {i: clean_caption(t) for i, t in raw.items()}
    path = atomic_write_json(run_dir / "captions.json", _coco_results(captions))
    scored = score_caption_files(path, cfg.data.annotations, tokenizer=cfg.tokenizer, partial=True)
    baseline = _baseline(cfg, items, run_dir)
    shown = items[: cfg.grid_images]
    nn_captions = baseline.get("captions", {})
    grid = save_captioned_grid(
        run_dir / "samples.png", [load_rgb(it.image) for it in shown],
        [f"model: {captions[it.image_id] or '(empty)'}"
         + (f" | nearest: {nn_captions[it.image_id]}" if nn_captions else "") for it in shown],
        ncols=min(4, len(shown)), cell=128,
    )  # fmt: skip
    result = {
        "protocol": "captioning",
        "metrics": {"cider_d": scored["metrics"]["cider_d"]},
        "baselines": {
            "nearest_caption": {
                k: v for k, v in baseline.items() if k not in ("nearest", "captions")
            }
        },
        "num_images": len(items),
        "task": cfg.task,
        "tokenizer": cfg.tokenizer,
        "predictions": str(path),
        "grid": grid,
        "generation": generation_info(gen),
        "per_image": {
            i: {
                "caption": captions[i],
                "raw": raw[i],
                "cider_d": scored["per_image"].get(i),
                "nearest_caption": nn_captions.get(i),
                "nearest_train_image": baseline.get("nearest", {}).get(i),
            }
            for i in captions
        },  # fmt: skip
    }
    return summary(finish(run_dir, result, cfg), "baselines", "num_images")
