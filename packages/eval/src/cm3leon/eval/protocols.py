"""Evaluation protocols over files: generated outputs in, JSON results (and grids) out.

These are the generation-free halves of the paper's protocols (§3.2, §4.2):

* :func:`score_caption_files` — captioning CIDEr-D (COCO results vs references);
* :func:`score_vqa_files` — VQA accuracy (VQA results vs annotations);
* :func:`fid_between` — FID between image folders, document shards and/or ``.npz`` stats;
* :func:`text_to_image_protocol` — zero-shot text-to-image on pre-generated samples:
  CLIP re-ranking of the first ``n`` candidates per prompt, FID of the chosen images
  against a reference set, mean CLIP score, and a sample grid (Table 1, Figure 4 right).

A result is a JSON-ready dict ``{"protocol", "metrics": {...}, ...}``; :func:`write_result`
stores it atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cm3leon.core.io import atomic_write_json, read_json, sha256_file
from cm3leon.eval.cider import score_captions
from cm3leon.eval.fid import FrechetDistance, build_feature_extractor
from cm3leon.eval.formats import (
    FormatError,
    iter_image_batches,
    iter_images,
    load_image_tensor,
    read_caption_references,
    read_caption_results,
    read_vqa_annotations,
    read_vqa_results,
)
from cm3leon.eval.frechet import GaussianStats
from cm3leon.eval.vqa import DEFAULT_VQA_VERSION, vqa_evaluate

__all__ = [
    "feature_stats",
    "fid_between",
    "read_samples_manifest",
    "score_caption_files",
    "score_vqa_files",
    "text_to_image_protocol",
    "write_result",
]


def _file_info(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return (
        {"path": str(path), "sha256": sha256_file(path)} if path.is_file() else {"path": str(path)}
    )


def write_result(path: str | Path, result: Mapping[str, Any]) -> Path:
    """Write a protocol result as JSON atomically."""
    return atomic_write_json(path, dict(result))


def _match_ids(
    preds: Mapping[str, Any], truth: Mapping[str, Any], what: str, partial: bool
) -> list[str]:
    unknown = sorted(set(preds) - set(truth))
    if unknown:
        raise FormatError(f"{len(unknown)} predicted {what} ids have no reference: {unknown[:10]}")
    missing = sorted(set(truth) - set(preds))
    if missing and not partial:
        raise FormatError(
            f"{len(missing)} {what} ids have no prediction: {missing[:10]} (use partial=True to "
            "score the predicted subset)"
        )
    return [k for k in truth if k in preds]


def score_caption_files(
    predictions: str | Path,
    references: str | Path,
    *,
    tokenizer: str = "ptb",
    partial: bool = False,
) -> dict[str, Any]:
    """CIDEr-D of a COCO-format results file against a references file."""
    preds, refs = read_caption_results(predictions), read_caption_references(references)
    ids = _match_ids(preds, refs, "image", partial)
    result = score_captions([preds[i] for i in ids], [refs[i] for i in ids], tokenizer=tokenizer)
    return {
        "protocol": "captioning",
        "metrics": {"cider_d": result.score},
        "num_images": len(ids),
        "tokenizer": tokenizer,
        "per_image": {i: float(s) for i, s in zip(ids, result.per_item, strict=True)},
        "inputs": {"predictions": _file_info(predictions), "references": _file_info(references)},
    }


def score_vqa_files(
    predictions: str | Path,
    annotations: str | Path,
    *,
    partial: bool = False,
    version: str = DEFAULT_VQA_VERSION,
) -> dict[str, Any]:
    """Official VQA accuracy of a results file against an annotations file.

    ``version`` picks the ``vqaEval.py`` normalisation, ``"2016"`` or ``"current"``
    (:mod:`cm3leon.eval.vqa`); the result records it under ``version``.
    """
    res = vqa_evaluate(
        read_vqa_results(predictions),
        read_vqa_annotations(annotations),
        partial=partial,
        version=version,
    )
    out = res.to_dict(per_question=True)
    return {
        "protocol": "vqa",
        "metrics": {"accuracy": out.pop("accuracy")},
        **out,
        "inputs": {"predictions": _file_info(predictions), "annotations": _file_info(annotations)},
    }


def feature_stats(
    source: str | Path, extractor: Any, *, batch_size: int = 32, desc: str = "features"
) -> GaussianStats:
    """Gaussian stats of an image folder or document shards (through ``extractor``), or
    of a ``.npz`` stats file."""
    source = Path(source)
    if source.is_file() and source.suffix == ".npz":
        return GaussianStats.load(source)
    metric = FrechetDistance(extractor, num_features=getattr(extractor, "num_features", None))
    for batch in tqdm(iter_image_batches(iter_images(source), batch_size), desc=desc, unit="batch"):
        metric.update(batch, real=False)
    return metric.stats(real=False, name=f"{desc} ({source})")


def fid_between(
    real: str | Path,
    fake: str | Path,
    *,
    features: str | Callable[[torch.Tensor], torch.Tensor] = "inception",
    features_options: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    method: str = "eigh",
    save_real_stats: str | Path | None = None,
) -> dict[str, Any]:
    """FID between image folders, cm3leon document shards or ``.npz`` stats (any mix)."""
    from cm3leon.eval.frechet import frechet_distance

    extractor = None
    if not all(Path(p).suffix == ".npz" for p in (real, fake)):
        extractor = build_feature_extractor(features, features_options)
    real_stats = feature_stats(real, extractor, batch_size=batch_size, desc="real images")
    fake_stats = feature_stats(fake, extractor, batch_size=batch_size, desc="generated images")
    if save_real_stats is not None:
        real_stats.save(save_real_stats)
    return {
        "protocol": "fid",
        "metrics": {"fid": frechet_distance(real_stats, fake_stats, method=method)},  # type: ignore[arg-type]
        "num_real": real_stats.num_samples,
        "num_fake": fake_stats.num_samples,
        "features": features if isinstance(features, str) else type(features).__name__,
        "method": method,
        "inputs": {"real": _file_info(real), "fake": _file_info(fake)},
    }


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


def text_to_image_protocol(
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
    from cm3leon.eval.clip_score import clip_scores
    from cm3leon.eval.features import ClipFeatureExtractor, resolve_document_encoder, tensor_to_pil

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
        "inputs": {"manifest": _file_info(manifest), "reference": _file_info(reference)},
    }
    if grid_path is not None:
        from cm3leon.eval.grid import save_grid

        save_grid(
            grid_path,
            grid_images,
            ncols=n,
            captions=grid_caps,
            highlight=grid_hl,
            cell=grid_cell,
            caption_lines=2 if grid_cell is None else max(2, grid_cell // 24),
        )
        result["grid"] = str(grid_path)
    return result
