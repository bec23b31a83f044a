"""Zero-shot text-to-image from a checkpoint (paper §3.2, Table 1, Figure 4).

checkpoint + captions -> N samples per prompt (registered generator, chosen decoding
strategy, ``k`` retrieved documents) -> CLIP re-ranking keeps one -> FID against the real
images, CLIP score, and — with the procedural world's ground truth — the world scorer's
measures next to their chance levels and prompt-ignoring floors measured in the same run.
The headline is ``object_acc`` (precision-aware: an extra object costs as much as a missing
one, so a clutter of shapes cannot score above chance); the older recall-only accuracies
(``colour_shape_acc`` ...) are reported beside it.

Prompts come from a COCO captions file (caption ``caption_index`` of every image) or
from the world's ``ground_truth/scenes.jsonl`` (scenes of ``split``; caption 0 is the
canonical one stating every object's size, colour, shape and position).  The FID
reference defaults to the real images of the prompts (copied, or rendered from the
ground truth, into ``<run_dir>/reference``).

Outputs in ``run_dir``: ``generation/`` (prompts, samples, resume marker),
``reference/``, ``samples.png`` (prompts x candidates, the CLIP choice outlined),
``results.json``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cm3leon.core.config import ConfigError
from cm3leon.eval.datasets import read_caption_dataset, read_world_scenes
from cm3leon.eval.formats import FormatError
from cm3leon.eval.generative.common import (
    fid_features,
    finish,
    generation_info,
    load_rgb,
    registries_or_active,
    summary,
)
from cm3leon.eval.generative.config import (
    ClipChoice,
    DecodingChoice,
    FidChoice,
    ModelSource,
    RetrievalChoice,
    generate_config,
)
from cm3leon.eval.generative.generation import DEFAULT_GENERATOR, run_generator

__all__ = ["TextToImageData", "TextToImageEvalConfig", "run_text_to_image_eval"]


@dataclass
class TextToImageData:
    """Prompts, ground truth and FID reference.

    Attributes:
        captions: COCO captions file (prompts: caption ``caption_index`` of every image).
        images: its image folder (default: found next to the file).
        ground_truth: world ``scenes.jsonl``: the prompts when ``captions`` is not given,
            and the truth the world scorer compares with (matched by image id).
        split: world split of the ground-truth prompts (``val``, ``test``, ``train``).
        caption_index: which caption of an image is the prompt.
        limit: first ``limit`` prompts (by image id).
        reference: FID reference (image folder, document shards or ``.npz`` stats);
            default: the prompts' real images.
    """

    captions: str | None = None
    images: str | None = None
    ground_truth: str | None = None
    split: str | None = "val"
    caption_index: int = 0
    limit: int | None = None
    reference: str | None = None


@dataclass
class TextToImageEvalConfig:
    """Schema of the ``eval_text_to_image`` runner and ``cm3leon eval protocol text-to-image``."""

    model: ModelSource = field(default_factory=ModelSource)
    data: TextToImageData = field(default_factory=TextToImageData)
    decoding: DecodingChoice = field(default_factory=DecodingChoice)
    retrieval: RetrievalChoice = field(default_factory=RetrievalChoice)
    clip: ClipChoice = field(default_factory=ClipChoice)
    fid: FidChoice = field(default_factory=FidChoice)
    num_samples: int = 8
    seed: int = 0
    batch_size: int = 4
    grid_prompts: int = 8
    generator: str = DEFAULT_GENERATOR

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.data.captions is None and self.data.ground_truth is None:
            raise ConfigError(
                "data: give data.captions (COCO captions) or data.ground_truth (world scenes.jsonl)"
            )


@dataclass(frozen=True)
class _Prompt:
    id: str
    text: str
    scene: dict[str, Any] | None
    image: Path | None


def _pick(captions: Any, index: int, where: str) -> str:
    if not captions:
        raise FormatError(f"{where}: no captions")
    return str(captions[index % len(captions)])


def _prompts(data: TextToImageData) -> list[_Prompt]:
    if data.captions is not None:
        scenes = read_world_scenes(data.ground_truth) if data.ground_truth else {}
        out = []
        for item in read_caption_dataset(data.captions, data.images, limit=data.limit):
            if scenes and item.image_id not in scenes:
                raise FormatError(
                    f"{data.ground_truth}: no scene for image id {item.image_id} of {data.captions}"
                )
            scene = scenes[item.image_id]["scene"] if scenes else None
            out.append(
                _Prompt(
                    item.image_id,
                    _pick(item.references, data.caption_index, item.image_id),
                    scene,
                    item.image,
                )
            )
        return out
    rows = read_world_scenes(data.ground_truth, split=data.split)  # type: ignore[arg-type]
    ids = sorted(rows, key=int)[: data.limit] if data.limit else sorted(rows, key=int)
    return [
        _Prompt(i, _pick(rows[i].get("captions"), data.caption_index, f"{data.ground_truth}: image {i}"),
                rows[i]["scene"], None)
        for i in ids
    ]  # fmt: skip


def _reference(prompts: list[_Prompt], folder: Path) -> Path:
    """The prompts' real images, written afresh into ``folder`` (copied, or rendered from
    the scenes), so that a smaller or changed prompt set never leaves stale images."""
    from cm3leon.core.io import atomic_directory
    from cm3leon.world import Scene, render_scene
    from cm3leon.eval.grid import to_pil

    with atomic_directory(folder, overwrite=True) as tmp:
        for p in prompts:
            if p.image is not None:
                shutil.copyfile(p.image, tmp / f"{p.id}{p.image.suffix.lower()}")
            elif p.scene is not None:
                to_pil(render_scene(Scene.from_dict(p.scene)).image).save(tmp / f"{p.id}.png")
    return folder


#: Offsets of the mismatched baselines: each image (or render) against this many other
#: prompts' truth (``n * 8`` pairs; all of them when there are fewer prompts).
_SHIFTS = 8


def _world_scores(prompts: list[_Prompt], chosen: dict[str, Path], *, seed: int) -> dict[str, Any]:
    """The world scorer's measures of the chosen images, and their chance and floors.

    Floors, in the same units and on the same prompts: ``shuffled`` (the chosen images
    against other prompts' truth: what these images score if they ignore their prompt),
    ``other_scene`` (renders of other prompts' scenes), ``mean_image`` (the prompts' mean
    render).  ``chance`` is the scorer's ``CHANCE`` with ``object_acc`` bounded for these
    prompts (``object_chance``).
    """
    from cm3leon.world import (
        CHANCE,
        aggregate,
        detect_objects,
        mean_image_baseline,
        object_chance,
        other_scene_baseline,
        score_text_to_image,
        shuffled_baseline,
    )

    scored = [p for p in prompts if p.scene is not None]
    truths = [p.scene for p in scored]
    images = [load_rgb(chosen[p.id]) for p in scored]
    dets = [detect_objects(im) for im in tqdm(images, desc="world scorer", unit="image")]
    per = [score_text_to_image(None, t, detections=d) for t, d in zip(truths, dets, strict=True)]
    out: dict[str, Any] = {
        "metrics": aggregate(per),
        "chance": {**CHANCE, "object_acc": object_chance(truths)},
        "per_prompt": dict(zip([p.id for p in scored], per, strict=True)),
        "mean_image": mean_image_baseline(truths),
    }
    if len(scored) >= 2:
        out["shuffled"] = shuffled_baseline(
            images, truths, seed=seed, shifts=_SHIFTS, detections=dets
        )
        out["other_scene"] = other_scene_baseline(truths, shifts=_SHIFTS, seed=seed)
    return out


def run_text_to_image_eval(
    cfg: TextToImageEvalConfig, run_dir: str | Path, *, registries: Any = None, force: bool = False
) -> dict[str, Any]:
    """Generate, re-rank and score; write ``run_dir/results.json`` and return the summary.

    The summary (the ablation table's columns) holds ``fid``, ``clip_score`` and, with
    ground truth, the headline ``object_acc`` with ``object_precision``,
    ``object_recall``, ``object_f1``, and ``colour_acc``, ``shape_acc``,
    ``colour_shape_acc``, ``position_acc``, ``size_acc``, ``count_acc``, ``scene_acc``;
    plus ``baselines`` (``chance``, ``shuffled``, ``other_scene``, ``mean_image``: see
    ``_world_scores``), ``fid_features``, ``num_prompts``, ``num_samples``.
    """
    from cm3leon.eval.protocols import text_to_image_protocol

    run_dir = Path(run_dir)
    registries = registries_or_active(registries)
    prompts = _prompts(cfg.data)
    if cfg.model.image_tokenizer is None:
        raise ConfigError("model.image_tokenizer: text-to-image needs the VQ image tokenizer")
    features, features_options = fid_features(cfg.fid)
    entries = [{"id": p.id, "task": "text_to_image", "text": p.text} for p in prompts]
    gen_cfg = generate_config(cfg.model, cfg.decoding, cfg.retrieval, output="image",
                              num_candidates=cfg.num_samples, seed=cfg.seed, batch_size=cfg.batch_size)  # fmt: skip
    gen = run_generator(entries, gen_cfg, run_dir / "generation", runner=cfg.generator,
                        registries=registries, force=force)  # fmt: skip
    if gen.manifest is None:
        raise FormatError(
            f"{gen.samples}: the generator wrote no manifest.json for the image prompts"
        )
    reference = cfg.data.reference or _reference(prompts, run_dir / "reference")
    scored = text_to_image_protocol(
        gen.manifest, reference, encoder=cfg.clip.encoder, encoder_options=cfg.clip.options,
        features=features, features_options=features_options, batch_size=cfg.fid.batch_size,
        grid_path=run_dir / "samples.png", grid_prompts=cfg.grid_prompts, grid_cell=96,
    )  # fmt: skip
    metrics = dict(scored["metrics"])
    baselines: dict[str, Any] = {}
    per_prompt: dict[str, Any] = {
        c["id"]: {"image": c["image"], "clip_score": c["clip_score"]} for c in scored["chosen"]
    }
    if any(p.scene is not None for p in prompts):
        world = _world_scores(
            prompts, {c["id"]: Path(c["image"]) for c in scored["chosen"]}, seed=cfg.seed
        )
        metrics.update(world["metrics"])
        baselines["chance"] = world["chance"]
        for name in ("shuffled", "other_scene", "mean_image"):
            if name in world:
                baselines[name] = {k: v for k, v in world[name].items() if k != "n_detected"}
        for pid, scores in world["per_prompt"].items():
            per_prompt[pid]["world"] = scores
    result = {
        "protocol": "text_to_image",
        "metrics": metrics,
        "baselines": baselines,
        "fid_features": features,
        "num_prompts": len(prompts),
        "num_samples": cfg.num_samples,
        "strategy": "pipelines" if cfg.decoding.pipelines else cfg.decoding.strategy,
        "retrieval_k": cfg.retrieval.k,
        "reference": str(reference),
        "grid": scored.get("grid"),
        "generation": generation_info(gen),
        "prompts": {p.id: p.text for p in prompts},
        "per_prompt": per_prompt,
    }
    return summary(
        finish(run_dir, result, cfg), "baselines", "fid_features", "num_prompts", "num_samples"
    )
