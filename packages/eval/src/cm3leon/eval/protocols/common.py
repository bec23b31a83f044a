"""Pieces shared by the protocol modules: registries, FID features, inputs and outputs."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.config import ConfigError
from cm3leon.core.io import atomic_write_json, sha256_file
from cm3leon.eval.formats import match_ids
from cm3leon.eval.protocols.config import FidChoice, ModelSource
from cm3leon.eval.protocols.generation import Generation

__all__ = [
    "RESULT_FILE",
    "file_info",
    "finish",
    "fid_features",
    "generation_info",
    "load_rgb",
    "match_ids",
    "registries_or_active",
    "require_model",
    "save_captioned_grid",
    "summary",
]

log = logging.getLogger("cm3leon.eval.protocols")

#: Every protocol writes its full result here (atomically) inside its run directory.
RESULT_FILE = "results.json"


def registries_or_active(registries: Any) -> Any:
    """``registries``, else the running ablation's, else the process-wide ones."""
    if registries is not None:
        return registries
    from cm3leon.eval.ablation.execute import active_registries

    return active_registries()


def require_model(model: ModelSource, *, image_prompts: str | None = None) -> None:
    """Check the model section before generating (scoring ``predictions`` needs none).

    Args:
        model: the protocol's ``model`` section.
        image_prompts: why the VQ image tokenizer is needed, if it is (the message's end).

    Raises:
        ConfigError: naming the missing key.
    """
    for key in ("export", "text_tokenizer"):
        if getattr(model, key) is None:
            raise ConfigError(
                f"model.{key}: required to generate from a checkpoint "
                "(or give predictions=PATH to score existing predictions)"
            )
    if image_prompts is not None and model.image_tokenizer is None:
        raise ConfigError(f"model.image_tokenizer: {image_prompts}")


def file_info(path: str | Path) -> dict[str, Any]:
    """``{"path", "sha256"}`` of an input file (``{"path"}`` for a folder)."""
    path = Path(path)
    return (
        {"path": str(path), "sha256": sha256_file(path)} if path.is_file() else {"path": str(path)}
    )


def fid_features(fid: FidChoice) -> tuple[str, dict[str, Any]]:
    """``(extractor name, options)`` for FID (see :class:`FidChoice`).

    ``auto`` picks ``inception`` when ``weights_path`` (or ``$CM3LEON_FID_INCEPTION``)
    names an existing file, else ``clip`` over the protocol's CLIP encoder.

    Raises:
        FileNotFoundError: a configured Inception weights file does not exist.
    """
    weights = fid.weights_path or os.environ.get("CM3LEON_FID_INCEPTION") or None
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"fid.weights_path: Inception weights file {weights} not found")
    name = fid.features
    if name == "auto":
        name = "inception" if weights else "clip"
    if name == "inception":
        return name, {**({"weights_path": weights} if weights else {}), **fid.options}
    return name, dict(fid.options)  # clip without options: the protocol's CLIP encoder


def load_rgb(path: Path) -> Any:
    """An image file as an RGB ``PIL.Image``, through core's one loader (errors name the file)."""
    from cm3leon.core.images import load_image

    return load_image(path)


def save_captioned_grid(
    path: Path, images: Sequence[Any], captions: Sequence[str], *, ncols: int, cell: int = 96
) -> str:
    """A grid of images with readable captions (cells upscaled to ``cell`` pixels)."""
    from cm3leon.eval.grid import save_grid

    save_grid(path, images, ncols=ncols, captions=captions, cell=cell, caption_lines=4)
    return str(path)


def generation_info(gen: Generation) -> dict[str, Any]:
    """What a result records about its generation."""
    return {
        "samples": str(gen.samples),
        "reused": gen.reused,
        "seconds": gen.seconds,
        "summary": {k: v for k, v in gen.summary.items() if not isinstance(v, (list, dict))},
    }


def finish(run_dir: Path, result: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """Add the config to ``result``, write it to ``run_dir/results.json``; return it."""
    result = {**result, "config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg}
    atomic_write_json(run_dir / RESULT_FILE, result)
    log.info("%s: %s", run_dir / RESULT_FILE, result.get("metrics"))
    return result


def summary(result: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The runner's return value: the metrics flat, plus ``keys`` of ``result``."""
    return {**result["metrics"], **{k: result[k] for k in keys if k in result}}
