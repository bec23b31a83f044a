"""Pieces shared by the generation-driven protocols: registries, FID features, outputs."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import atomic_write_json
from cm3leon.eval.generative.config import FidChoice
from cm3leon.eval.generative.generation import Generation

__all__ = [
    "RESULT_FILE",
    "finish",
    "fid_features",
    "generation_info",
    "load_rgb",
    "registries_or_active",
    "save_captioned_grid",
    "summary",
]

log = logging.getLogger("cm3leon.eval.generative")

#: Every protocol writes its full result here (atomically) inside its run directory.
RESULT_FILE = "results.json"


def registries_or_active(registries: Any) -> Any:
    """``registries``, else the running ablation's, else the process-wide ones."""
    if registries is not None:
        return registries
    from cm3leon.eval.ablation.execute import active_registries

    return active_registries()


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
    """An image file as an RGB ``PIL.Image`` (fully loaded, file closed)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


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
