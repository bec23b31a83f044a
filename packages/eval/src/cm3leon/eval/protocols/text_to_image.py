"""Zero-shot text-to-image (paper §3.2, Table 1, Figure 4): the ``text_to_image`` runner and
``cm3leon eval text-to-image``.

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

With ``predictions`` (a samples manifest, the generator's layout: see
:func:`read_samples_manifest`) nothing is generated: those samples are re-ranked and
scored the same way -- against ``data.reference``, and with the world's measures when
``data`` names the prompts.  :func:`score_text_to_image` is the scoring over files alone
(re-rank the first ``num_candidates`` of every prompt, FID, CLIP score, grid).

Outputs in ``run_dir``: ``generation/`` (prompts, samples, resume marker),
``reference/``, ``samples.png`` (prompts x candidates, the CLIP choice outlined),
``results.json``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from cm3leon.core.config import ConfigError
from cm3leon.core.io import read_json
from cm3leon.decoding.presets import DecodingPreset
from cm3leon.eval.datasets import read_caption_dataset, read_world_entities, read_world_scenes
from cm3leon.eval.formats import FormatError
from cm3leon.eval.protocols.common import (
    fid_features,
    file_info,
    finish,
    generation_info,
    load_rgb,
    registries_or_active,
    require_model,
    summary,
)
from cm3leon.eval.protocols.config import (
    ClipChoice,
    FidChoice,
    ModelSource,
    RetrievalChoice,
    generate_config,
)
from cm3leon.eval.protocols.generation import DEFAULT_GENERATOR, run_generator

if TYPE_CHECKING:
    import torch

__all__ = [
    "TextToImageConfig",
    "TextToImageData",
    "read_samples_manifest",
    "run_text_to_image",
    "score_text_to_image",
]


@dataclass
class TextToImageData:
    """Prompts, ground truth and FID reference.

    Attributes:
        captions: COCO captions file (prompts: caption ``caption_index`` of every image).
        images: its image folder (default: found next to the file).
        ground_truth: world ``scenes.jsonl``: the prompts when ``captions`` is not given,
            and the truth the world scorer compares with (matched by image id).
        entities: the world's long-tail ``entities/documents.jsonl``: prompts naming
            entities (caption of each document of ``split``), scored from pixels by the
            entity scorer (``entity_cell_acc``, ``entity_match``), broken down by how many
            training documents show the entity.
        split: world split of the ground-truth prompts (``val``, ``test``, ``train``).
        caption_index: which caption of an image is the prompt.
        limit: first ``limit`` prompts (by image id).
        reference: FID reference (image folder, document shards or ``.npz`` stats);
            default: the prompts' real images (required when ``predictions`` is scored
            without ``captions`` or ``ground_truth``).
    """

    captions: str | None = None
    images: str | None = None
    ground_truth: str | None = None
    entities: str | None = None
    split: str | None = "val"
    caption_index: int = 0
    limit: int | None = None
    reference: str | None = None


@dataclass
class TextToImageConfig:
    """Schema of the ``text_to_image`` runner and ``cm3leon eval text-to-image``.

    ``predictions``: a samples manifest to score instead of generating (``model``,
    ``decoding``, ``retrieval`` and ``num_samples`` are then unused).  ``num_candidates``:
    re-rank only the first N samples of every prompt (default: all; Figure 4, right).
    """

    model: ModelSource = field(default_factory=ModelSource)
    data: TextToImageData = field(default_factory=TextToImageData)
    decoding: DecodingPreset = field(default_factory=DecodingPreset)
    retrieval: RetrievalChoice = field(default_factory=RetrievalChoice)
    clip: ClipChoice = field(default_factory=ClipChoice)
    fid: FidChoice = field(default_factory=FidChoice)
    num_samples: int = 8
    seed: int = 0
    batch_size: int = 4
    grid_prompts: int = 8
    generator: str = DEFAULT_GENERATOR
    predictions: str | None = None
    num_candidates: int | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        given = [k for k in ("captions", "ground_truth", "entities") if getattr(self.data, k)]
        if self.data.entities is not None and len(given) > 1:
            raise ConfigError(f"data.entities is a prompt set of its own; drop data.{given[0]}")
        if not given:
            if self.predictions is None:
                raise ConfigError(
                    "data: give data.captions (COCO captions), data.ground_truth (world "
                    "scenes.jsonl) or data.entities (world entities/documents.jsonl)"
                )
            if self.data.reference is None:
                raise ConfigError(
                    "data.reference: scoring predictions without data.captions or "
                    "data.ground_truth needs the FID reference"
                )


@dataclass(frozen=True)
class _Prompt:
    id: str
    text: str
    scene: dict[str, Any] | None
    image: Path | None
    entity: dict[str, Any] | None = None


def _pick(captions: Any, index: int, where: str) -> str:
    if not captions:
        raise FormatError(f"{where}: no captions")
    return str(captions[index % len(captions)])


def _prompts(data: TextToImageData) -> list[_Prompt]:
    if data.entities is not None:
        # The prompts ask for the entity itself (the full-frame ``mosaic`` view); ``panel``
        # documents (the mosaic small somewhere on a wall) stay in the bank and pretraining.
        rows = [r for r in read_world_entities(data.entities, split=data.split)
                if r.get("view", "mosaic") == "mosaic"][: data.limit]  # fmt: skip
        return [
            _Prompt(str(r["id"]), str(r["caption"]), None, Path(r["image"]),
                    {"name": r["entity"], "pattern": r["pattern"],
                     "train_count": int(r.get("train_count", 0))})
            for r in rows
        ]  # fmt: skip
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


def read_samples_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a generated-samples manifest.

    Layout (paths relative to the manifest's folder)::

        {"prompts": [{"id": "17", "text": "a red cube", "images": ["17/0.png", "17/1.png"]}]}
    """
    path = Path(path)
    data = read_json(path)
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, list) or not prompts:
        raise FormatError(f"{path}: expected {{'prompts': [...]}} with at least one prompt")
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, dict) or not isinstance(p.get("text"), str) or not p.get("images"):
            raise FormatError(f"{path}: prompt {i} needs 'text' and a non-empty 'images' list")
        images = [path.parent / str(im) for im in p["images"]]
        missing = [str(im) for im in images if not im.is_file()]
        if missing:
            raise FormatError(f"{path}: prompt {p.get('id', i)}: missing images {missing[:5]}")
        out.append({"id": str(p.get("id", i)), "text": p["text"], "images": images})
    return out


def _reference(prompts: list[_Prompt], folder: Path) -> Path:
    """The prompts' real images, written afresh into ``folder`` (copied, or rendered from
    the scenes), so that a smaller or changed prompt set never leaves stale images."""
    from cm3leon.core.io import atomic_directory
    from cm3leon.eval.grid import to_pil
    from cm3leon.world import Scene, render_scene

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


def _save_grid(path: str | Path, images: list[Any], captions: list[str], highlight: list[int],
               ncols: int, cell: int | None) -> str:  # fmt: skip
    """The prompts x candidates grid, the CLIP choice of every prompt outlined."""
    from cm3leon.eval.grid import save_grid

    save_grid(path, images, ncols=ncols, captions=captions, highlight=highlight, cell=cell,
              caption_lines=2 if cell is None else max(2, cell // 24))  # fmt: skip
    return str(path)


def score_text_to_image(
    manifest: str | Path,
    reference: str | Path,
    *,
    encoder: Any = "clip-image",
    encoder_options: Mapping[str, Any] | None = None,
    num_candidates: int | None = None,
    features: str | Callable[[torch.Tensor], torch.Tensor] = "clip",
    features_options: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    grid_path: str | Path | None = None,
    grid_prompts: int = 8,
    grid_cell: int | None = None,
) -> dict[str, Any]:
    """Zero-shot text-to-image scoring of pre-generated candidates (Table 1 protocol).

    For each prompt the first ``num_candidates`` images (all by default) are scored with the
    CLIP ``encoder`` against the prompt text and the best one is kept (the paper keeps 1 of
    8); FID of the kept images against ``reference`` (folder or ``.npz``) uses the
    ``features`` extractor.  Varying ``num_candidates`` over one set of samples gives
    Figure 4 (right) without generating again.  ``grid_cell`` upscales the grid's cells
    (pixels) so that the prompts under them stay readable.
    """
    import torch

    from cm3leon.eval.formats import load_image_tensor
    from cm3leon.eval.metrics.clip_score import clip_scores
    from cm3leon.eval.metrics.features import (
        ClipFeatureExtractor,
        resolve_document_encoder,
        tensor_to_pil,
    )
    from cm3leon.eval.metrics.fid import FrechetDistance, build_feature_extractor
    from cm3leon.eval.protocols.fid import feature_stats

    prompts = read_samples_manifest(manifest)
    enc = resolve_document_encoder(encoder, encoder_options)
    available = min(len(p["images"]) for p in prompts)
    n = available if num_candidates is None else int(num_candidates)
    if not 1 <= n <= available:
        raise ValueError(f"num_candidates={n}, but some prompt has only {available} images")
    if features == "clip" and not features_options:
        extractor: Any = ClipFeatureExtractor(enc)  # FID on the re-ranking encoder's features
    else:
        extractor = build_feature_extractor(features, features_options)
    fid = FrechetDistance(extractor, num_features=getattr(extractor, "num_features", None))
    chosen, chosen_scores, grid_images, grid_caps, grid_hl = [], [], [], [], []
    for p in tqdm(prompts, desc=f"re-rank {n} candidates", unit="prompt"):
        images = [tensor_to_pil(load_image_tensor(f)[None])[0] for f in p["images"][:n]]
        scores = clip_scores(enc, images, [p["text"]] * n)  # (n,)
        best = int(torch.argmax(scores))
        chosen.append(
            {"id": p["id"], "image": str(p["images"][best]), "clip_score": float(scores[best])}
        )
        chosen_scores.append(float(scores[best]))
        fid.update(load_image_tensor(p["images"][best])[None], real=False)
        if len(grid_images) < grid_prompts * n:
            grid_hl.append(len(grid_images) + best)
            grid_images.extend(images)
            grid_caps.extend([p["text"]] + [""] * (n - 1))
    ref_stats = feature_stats(reference, extractor, batch_size=batch_size, desc="reference images")
    fid.reference = ref_stats
    result = {
        "protocol": "text_to_image",
        "metrics": {
            "fid": float(fid.compute()),
            "clip_score": sum(chosen_scores) / len(chosen_scores),
        },
        "num_prompts": len(prompts),
        "num_candidates": n,
        "features": features if isinstance(features, str) else type(features).__name__,
        "chosen": chosen,
        "inputs": {"manifest": file_info(manifest), "reference": file_info(reference)},
    }
    if grid_path is not None:
        result["grid"] = _save_grid(grid_path, grid_images, grid_caps, grid_hl, n, grid_cell)
    return result


def _generate(cfg: TextToImageConfig, prompts: list[_Prompt], run_dir: Path, registries: Any,
              force: bool) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Generate ``num_samples`` images per prompt; the manifest and what the result records."""
    entries = [{"id": p.id, "task": "text_to_image", "text": p.text} for p in prompts]
    gen_cfg = generate_config(cfg.model, cfg.decoding, cfg.retrieval, output="image",
                              num_candidates=cfg.num_samples, seed=cfg.seed, batch_size=cfg.batch_size)  # fmt: skip
    gen = run_generator(entries, gen_cfg, run_dir / "generation", runner=cfg.generator,
                        registries=registries, force=force)  # fmt: skip
    if gen.manifest is None:
        raise FormatError(
            f"{gen.samples}: the generator wrote no manifest.json for the image prompts"
        )
    source = {
        "num_samples": cfg.num_samples,
        "strategy": "pipelines" if cfg.decoding.pipelines else cfg.decoding.strategy,
        "retrieval_k": cfg.retrieval.k,
    }
    return gen.manifest, {**source, "generation": generation_info(gen)}


def _add_world(prompts: list[_Prompt], scored: dict[str, Any], seed: int, metrics: dict[str, Any],
               baselines: dict[str, Any], per_prompt: dict[str, Any]) -> None:  # fmt: skip
    """Add the world scorer's measures and floors of the chosen images (prompts with scenes)."""
    chosen = {c["id"]: Path(c["image"]) for c in scored["chosen"]}
    missing = [p.id for p in prompts if p.scene is not None and p.id not in chosen]
    if missing:
        where = scored["inputs"]["manifest"]["path"]
        raise FormatError(f"{where}: no samples for prompt(s) {missing[:10]}")
    world = _world_scores(prompts, chosen, seed=seed)
    metrics.update(world["metrics"])
    baselines["chance"] = world["chance"]
    for name in ("shuffled", "other_scene", "mean_image"):
        if name in world:
            baselines[name] = {k: v for k, v in world[name].items() if k != "n_detected"}
    for pid, scores in world["per_prompt"].items():
        per_prompt[pid]["world"] = scores


#: Training-document counts of an entity -> frequency bucket of the breakdown.
FREQUENCY_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("unseen", 0, 0), ("1-2", 1, 2), ("3-9", 3, 9), ("10+", 10, 1 << 62),
)  # fmt: skip


def _entity_scores(prompts: list[_Prompt], chosen: dict[str, Path]) -> dict[str, Any]:
    """Entity scorer measures of the chosen images, the shuffled floor, and the breakdown
    by how often pretraining saw each entity (``train_count``)."""
    import numpy as np

    from cm3leon.world.entities import ENTITY_CHANCE, ENTITY_METRICS, score_entity

    scored = [p for p in prompts if p.entity is not None]
    images = [load_rgb(chosen[p.id]) for p in scored]
    per = [score_entity(im, p.entity["pattern"]) for im, p in zip(images, scored, strict=True)]

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        return {m: float(np.mean([r[m] for r in rows])) for m in ENTITY_METRICS} if rows else {}

    shuffled = [
        score_entity(images[i], scored[(i + s) % len(scored)].entity["pattern"])
        for s in range(1, min(_SHIFTS, len(scored) - 1) + 1)
        for i in range(len(scored))
    ]  # fmt: skip
    buckets = {}
    for name, lo, hi in FREQUENCY_BUCKETS:
        rows = [r for r, p in zip(per, scored, strict=True) if lo <= p.entity["train_count"] <= hi]
        if rows:
            buckets[name] = {"n": len(rows), **mean(rows)}
    return {
        "metrics": mean(per), "chance": dict(ENTITY_CHANCE), "shuffled": mean(shuffled),
        "by_train_count": buckets, "per_prompt": dict(zip([p.id for p in scored], per, strict=True)),
    }  # fmt: skip


def _add_entities(prompts: list[_Prompt], scored: dict[str, Any], metrics: dict[str, Any],
                  baselines: dict[str, Any], per_prompt: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Add the entity measures and floors of the chosen images; the frequency breakdown."""
    chosen = {c["id"]: Path(c["image"]) for c in scored["chosen"]}
    missing = [p.id for p in prompts if p.entity is not None and p.id not in chosen]
    if missing:
        where = scored["inputs"]["manifest"]["path"]
        raise FormatError(f"{where}: no samples for prompt(s) {missing[:10]}")
    ent = _entity_scores(prompts, chosen)
    metrics.update(ent["metrics"])
    baselines["entity_chance"] = ent["chance"]
    if ent["shuffled"]:
        baselines["entity_shuffled"] = ent["shuffled"]
    for pid, scores in ent["per_prompt"].items():
        per_prompt[pid]["entity"] = scores
    return ent["by_train_count"]


def run_text_to_image(
    cfg: TextToImageConfig, run_dir: str | Path, *, registries: Any = None, force: bool = False
) -> dict[str, Any]:
    """Generate (or take ``cfg.predictions``), re-rank and score; write ``run_dir/results.json``.

    The summary (the ablation table's columns) holds ``fid``, ``clip_score`` and, with
    ground truth, the headline ``object_acc`` with ``object_precision``,
    ``object_recall``, ``object_f1``, and ``colour_acc``, ``shape_acc``,
    ``colour_shape_acc``, ``position_acc``, ``size_acc``, ``count_acc``, ``scene_acc``;
    plus ``baselines`` (``chance``, ``shuffled``, ``other_scene``, ``mean_image``: see
    ``_world_scores``), ``fid_features``, ``num_prompts``, ``num_samples``.
    """
    run_dir = Path(run_dir)
    registries = registries_or_active(registries)
    named = any(x is not None for x in (cfg.data.captions, cfg.data.ground_truth, cfg.data.entities))
    prompts = _prompts(cfg.data) if named else []
    if cfg.predictions is None:
        require_model(cfg.model, image_prompts="text-to-image needs the VQ image tokenizer")
    features, features_options = fid_features(cfg.fid)
    if cfg.predictions is None:
        manifest, source = _generate(cfg, prompts, run_dir, registries, force)
    else:
        manifest, source = Path(cfg.predictions), {"predictions": file_info(cfg.predictions)}
    reference = cfg.data.reference or _reference(prompts, run_dir / "reference")
    scored = score_text_to_image(
        manifest, reference, encoder=cfg.clip.encoder, encoder_options=cfg.clip.options,
        num_candidates=cfg.num_candidates, features=features, features_options=features_options,
        batch_size=cfg.fid.batch_size, grid_path=run_dir / "samples.png", grid_prompts=cfg.grid_prompts,
        grid_cell=96,
    )  # fmt: skip
    metrics, baselines = dict(scored["metrics"]), {}
    per_prompt: dict[str, Any] = {
        c["id"]: {"image": c["image"], "clip_score": c["clip_score"]} for c in scored["chosen"]
    }
    if any(p.scene is not None for p in prompts):
        _add_world(prompts, scored, cfg.seed, metrics, baselines, per_prompt)
    by_count = (
        _add_entities(prompts, scored, metrics, baselines, per_prompt)
        if any(p.entity is not None for p in prompts) else None
    )  # fmt: skip
    if cfg.predictions is not None:
        source = {"num_samples": scored["num_candidates"], **source}
    elif cfg.num_candidates is not None:
        source["num_candidates"] = scored["num_candidates"]
    result = {
        "protocol": "text_to_image", "metrics": metrics, "baselines": baselines, "fid_features": features,
        "num_prompts": len(prompts) if named else scored["num_prompts"], **source,
        "reference": str(reference), "grid": scored.get("grid"),
        "prompts": {p.id: p.text for p in prompts}, "per_prompt": per_prompt,
    }  # fmt: skip
    if by_count is not None:
        result["by_train_count"] = by_count
    return summary(
        finish(run_dir, result, cfg), "baselines", "fid_features", "num_prompts", "num_samples",
        "by_train_count",
    )  # fmt: skip
