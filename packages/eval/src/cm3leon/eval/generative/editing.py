"""Text-guided image editing from a checkpoint (paper §4.1, InstructPix2Pix).

checkpoint + InstructPix2Pix samples (input image, instruction, edited image) -> edited
images decoded with dual guidance (separate image and text CFG scales, 1.5 and 7.5 in
§4.1) -> with the procedural world's ``ground_truth/edits.jsonl``, the world scorer's
:func:`~cm3leon.world.score_edit` (``edit_acc``: the requested change is visible,
``preserve_acc``: the other objects are kept, ``success``: both,
``after_colour_shape_acc``: the result against the target scene).  Baselines scored the
same way: ``identity`` (return the input unchanged — the floor of an editor that
ignores the instruction) and ``target`` (the dataset's edited image — the scorer's
ceiling).  ``mse_to_target`` (pixels in [0, 1], at the target's size) needs no ground
truth.

The prompt is the fine-tuning layout of the registered SFT task ``task`` (default
``instructpix2pix``): ``Edit the image following the text instruction <break> [input]
<break> {instruction} <break>`` -> the edited image.

Outputs in ``run_dir``: ``generation/``, ``samples.png`` (input | generated | target
rows), ``results.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import MISSING
from tqdm.auto import tqdm

from cm3leon.core.config import ConfigError
from cm3leon.eval.datasets import read_edit_samples, read_world_edits
from cm3leon.eval.formats import FormatError
from cm3leon.eval.generative.common import (
    finish,
    generation_info,
    load_rgb,
    registries_or_active,
    save_captioned_grid,
    summary,
)
from cm3leon.eval.generative.config import (
    ClipChoice,
    DecodingChoice,
    ModelSource,
    RetrievalChoice,
    generate_config,
)
from cm3leon.eval.generative.generation import DEFAULT_GENERATOR, run_generator

__all__ = ["EditingData", "EditingEvalConfig", "run_editing_eval"]


@dataclass
class EditingData:
    """Attributes:
    root: InstructPix2Pix folder (holding ``split/``) or a split folder.
    split: sub-folder to read.
    ground_truth: world ``edits.jsonl`` (matched by sample folder name).
    limit: first ``limit`` samples (by folder name).
    """

    root: str = MISSING
    split: str = "val"
    ground_truth: str | None = None
    limit: int | None = None


@dataclass
class EditingEvalConfig:
    """Schema of the ``eval_editing`` runner and ``cm3leon eval protocol editing``."""

    model: ModelSource = field(default_factory=ModelSource)
    data: EditingData = field(default_factory=EditingData)
    decoding: DecodingChoice = field(default_factory=lambda: DecodingChoice(strategy="dual_cfg"))
    retrieval: RetrievalChoice = field(default_factory=RetrievalChoice)
    clip: ClipChoice = field(default_factory=ClipChoice)
    task: str = "instructpix2pix"
    output_field: str = "edited_image"
    num_samples: int = 1
    rerank: bool = False
    seed: int = 0
    batch_size: int = 4
    grid_samples: int = 8
    generator: str = DEFAULT_GENERATOR

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")


def _mse(a: Any, b: Any) -> float:
    """Mean squared pixel difference in [0, 1] units, ``a`` resized to ``b``'s size."""
    from PIL import Image

    if a.size != b.size:
        a = a.resize(b.size, Image.Resampling.BILINEAR)
    x = np.asarray(a, dtype=np.float64) / 255.0
    y = np.asarray(b, dtype=np.float64) / 255.0
    return float(((x - y) ** 2).mean())


def _world(items: list[Any], inputs: dict[str, Any], outputs: dict[str, Any], targets: dict[str, Any],
           edits: dict[str, Any], source: str) -> dict[str, Any]:  # fmt: skip
    from cm3leon.world import aggregate, score_edit

    missing = [it.sample_id for it in items if it.sample_id not in edits]
    if missing:
        raise FormatError(f"{source}: no ground truth for sample(s) {missing[:10]}")
    ids = [it.sample_id for it in items]
    per = {
        i: score_edit(inputs[i], outputs[i], edits[i])
        for i in tqdm(ids, desc="score edits", unit="edit")
    }
    out = {"metrics": aggregate(list(per.values())), "per_sample": per, "baselines": {}}
    out["baselines"]["identity"] = aggregate(
        [score_edit(inputs[i], inputs[i], edits[i]) for i in ids]
    )
    if all(i in targets for i in ids):
        out["baselines"]["target"] = aggregate(
            [score_edit(inputs[i], targets[i], edits[i]) for i in ids]
        )
    return out


def run_editing_eval(
    cfg: EditingEvalConfig, run_dir: str | Path, *, registries: Any = None, force: bool = False
) -> dict[str, Any]:
    """Generate edits and score them; write ``run_dir/results.json``.

    The summary holds ``mse_to_target`` and, with ground truth, ``edit_acc``,
    ``preserve_acc``, ``success``, ``after_colour_shape_acc``; ``baselines.identity.*``,
    ``baselines.target.*``; ``num_edits``.
    """
    run_dir = Path(run_dir)
    registries = registries_or_active(registries)
    if cfg.model.image_tokenizer is None:
        raise ConfigError("model.image_tokenizer: editing needs the VQ image tokenizer")
    items = read_edit_samples(cfg.data.root, cfg.data.split, limit=cfg.data.limit)
    edits = read_world_edits(cfg.data.ground_truth) if cfg.data.ground_truth else None
    entries = [
        {"id": it.sample_id, "task": cfg.task, "output": cfg.output_field,
         "record": {"image": str(it.image.resolve()), "instruction": it.instruction}}
        for it in items
    ]  # fmt: skip
    gen_cfg = generate_config(
        cfg.model, cfg.decoding, cfg.retrieval, output="image", num_candidates=cfg.num_samples,
        seed=cfg.seed, batch_size=cfg.batch_size, rerank=cfg.clip if cfg.rerank else None,
    )  # fmt: skip
    gen = run_generator(entries, gen_cfg, run_dir / "generation", runner=cfg.generator,
                        registries=registries, force=force)  # fmt: skip
    inputs = {it.sample_id: load_rgb(it.image) for it in items}
    outputs = {it.sample_id: load_rgb(gen.image_path(gen.best(it.sample_id))) for it in items}
    targets = {it.sample_id: load_rgb(it.target) for it in items if it.target is not None}
    metrics: dict[str, Any] = {}
    if targets:
        metrics["mse_to_target"] = float(np.mean([_mse(outputs[i], t) for i, t in targets.items()]))
    baselines: dict[str, Any] = {}
    per_sample: dict[str, Any] = {
        it.sample_id: {
            "instruction": it.instruction,
            "output": str(gen.image_path(gen.best(it.sample_id))),
        }
        for it in items
    }
    if edits is not None:
        world = _world(items, inputs, outputs, targets, edits, str(cfg.data.ground_truth))
        metrics.update(world["metrics"])
        baselines = world["baselines"]
        for i, scores in world["per_sample"].items():
            per_sample[i]["world"] = scores
    shown = items[: cfg.grid_samples]
    cells, caps = [], []
    for it in shown:
        row = [
            inputs[it.sample_id],
            outputs[it.sample_id],
            targets.get(it.sample_id, inputs[it.sample_id]),
        ]
        cells += row
        caps += [
            it.instruction,
            "generated",
            "target" if it.sample_id in targets else "(no target)",
        ]
    grid = save_captioned_grid(run_dir / "samples.png", cells, caps, ncols=3, cell=96)
    result = {
        "protocol": "editing",
        "metrics": metrics,
        "baselines": baselines,
        "num_edits": len(items),
        "ground_truth": cfg.data.ground_truth,
        "task": cfg.task,
        "strategy": "pipelines" if cfg.decoding.pipelines else cfg.decoding.strategy,
        "grid": grid,
        "generation": generation_info(gen),
        "per_sample": per_sample,
    }
    return summary(finish(run_dir, result, cfg), "baselines", "num_edits")
