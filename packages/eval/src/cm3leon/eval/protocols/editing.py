"""Text-guided image editing (paper §4.1, InstructPix2Pix): the ``editing`` runner and
``cm3leon eval editing``.

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

With ``predictions`` (a folder holding one edited image per sample, named
``<sample id>.png``/``.jpg``/...) nothing is generated: those images are scored the same
way (:func:`score_edits`).

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
from cm3leon.decoding.presets import DecodingPreset
from cm3leon.eval.datasets import read_edit_samples, read_world_edits
from cm3leon.eval.formats import FormatError, list_images
from cm3leon.eval.protocols.common import (
    file_info,
    finish,
    generation_info,
    load_rgb,
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

__all__ = ["EditingConfig", "EditingData", "read_edit_predictions", "run_editing", "score_edits"]


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
class EditingConfig:
    """Schema of the ``editing`` runner and ``cm3leon eval editing``.

    ``predictions``: a folder of edited images (``<sample id>.<ext>``) to score instead
    of generating.
    """

    model: ModelSource = field(default_factory=ModelSource)
    data: EditingData = field(default_factory=EditingData)
    decoding: DecodingPreset = field(default_factory=lambda: DecodingPreset(strategy="dual_cfg"))
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
    predictions: str | None = None

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


def read_edit_predictions(folder: str | Path, ids: list[str]) -> dict[str, Path]:
    """The edited image of every sample id in ``folder`` (``<id>.<ext>``, any image suffix).

    Raises:
        FormatError: no images, two images for one id, or ids without an image.
    """
    found: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in found:
            raise FormatError(f"{folder}: two images for sample {path.stem!r}")
        found[path.stem] = path
    missing = [i for i in ids if i not in found]
    if missing:
        raise FormatError(f"{folder}: no edited image for sample(s) {missing[:10]}")
    return {i: found[i] for i in ids}


def _generate(cfg: EditingConfig, items: list[Any], run_dir: Path, registries: Any,
              force: bool) -> tuple[dict[str, Path], dict[str, Any]]:  # fmt: skip
    """Generate the edits; the best image of every sample and the generation's record."""
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
    paths = {it.sample_id: gen.image_path(gen.best(it.sample_id)) for it in items}
    strategy = "pipelines" if cfg.decoding.pipelines else cfg.decoding.strategy
    return paths, {"strategy": strategy, "generation": generation_info(gen)}


def _grid(path: Path, items: list[Any], inputs: dict[str, Any], outputs: dict[str, Any],
          targets: dict[str, Any]) -> str:  # fmt: skip
    """Rows of input | generated | target (the input again when there is no target)."""
    cells, caps = [], []
    for it in items:
        i = it.sample_id
        cells += [inputs[i], outputs[i], targets.get(i, inputs[i])]
        caps += [it.instruction, "generated", "target" if i in targets else "(no target)"]
    return save_captioned_grid(path, cells, caps, ncols=3, cell=96)


def score_edits(cfg: EditingConfig, items: list[Any], edited: dict[str, Path], run_dir: Path,
                edits: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """Score the edited image of every sample: ``mse_to_target`` and, with the world's
    ``edits`` (ground truth), the world scorer's measures and baselines; the samples grid."""
    inputs = {it.sample_id: load_rgb(it.image) for it in items}
    outputs = {it.sample_id: load_rgb(edited[it.sample_id]) for it in items}
    targets = {it.sample_id: load_rgb(it.target) for it in items if it.target is not None}
    metrics: dict[str, Any] = {}
    if targets:
        metrics["mse_to_target"] = float(np.mean([_mse(outputs[i], t) for i, t in targets.items()]))
    baselines: dict[str, Any] = {}
    per_sample: dict[str, Any] = {
        it.sample_id: {"instruction": it.instruction, "output": str(edited[it.sample_id])}
        for it in items
    }
    if edits is not None:
        world = _world(items, inputs, outputs, targets, edits, str(cfg.data.ground_truth))
        metrics.update(world["metrics"])
        baselines = world["baselines"]
        for i, scores in world["per_sample"].items():
            per_sample[i]["world"] = scores
    grid = _grid(run_dir / "samples.png", items[: cfg.grid_samples], inputs, outputs, targets)
    return {"metrics": metrics, "baselines": baselines, "grid": grid, "per_sample": per_sample}


def run_editing(
    cfg: EditingConfig, run_dir: str | Path, *, registries: Any = None, force: bool = False
) -> dict[str, Any]:
    """Generate edits (or take ``cfg.predictions``) and score them; write
    ``run_dir/results.json``.

    The summary holds ``mse_to_target`` and, with ground truth, ``edit_acc``,
    ``preserve_acc``, ``success``, ``after_colour_shape_acc``; ``baselines.identity.*``,
    ``baselines.target.*``; ``num_edits``.
    """
    run_dir = Path(run_dir)
    registries = registries_or_active(registries)
    if cfg.predictions is None:
        require_model(cfg.model, image_prompts="editing needs the VQ image tokenizer")
    items = read_edit_samples(cfg.data.root, cfg.data.split, limit=cfg.data.limit)
    edits = read_world_edits(cfg.data.ground_truth) if cfg.data.ground_truth else None
    if cfg.predictions is None:
        edited, source = _generate(cfg, items, run_dir, registries, force)
    else:
        edited = read_edit_predictions(cfg.predictions, [it.sample_id for it in items])
        source = {"predictions": file_info(cfg.predictions)}
    scored = score_edits(cfg, items, edited, run_dir, edits)
    result = {
        "protocol": "editing",
        "metrics": scored["metrics"],
        "baselines": scored["baselines"],
        "num_edits": len(items),
        "ground_truth": cfg.data.ground_truth,
        "task": cfg.task,
        "grid": scored["grid"],
        **source,
        "per_sample": scored["per_sample"],
    }
    return summary(finish(run_dir, result, cfg), "baselines", "num_edits")
