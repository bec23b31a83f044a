"""Writing generation results: candidate PNGs, one grid per prompt, JSONL, a manifest.

Layout of an output directory (written under a temporary name by the caller and moved
into place with ``COMPLETE`` last, so a partial run is never mistaken for a finished one)::

    results.jsonl           one line per prompt: candidates best first (text, image path,
                            CLIP score, pipeline, stop reason, token ids)
    images/<id>/<rank>.png  every image candidate, rank 0 = best
    grids/<id>.png          all candidates of a prompt in one PNG, best first (left)
    manifest.json           {"prompts": [{"id", "text", "images"}]} of the image prompts:
                            the samples manifest cm3leon-eval's text_to_image protocol reads
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.documents import image_to_png
from cm3leon.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from cm3leon.decoding.generator import GenerationResult

__all__ = ["image_grid", "safe_name", "write_results"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(prompt_id: str) -> str:
    """A file-name-safe version of a prompt id (``a/b c`` -> ``a_b_c``)."""
    name = _UNSAFE.sub("_", prompt_id).strip("._")
    return name or "prompt"


def image_grid(images: Sequence[Any], *, ncols: int | None = None, pad: int = 2) -> Any:
    """Paste ``images`` row-major on a white canvas (cells sized like the largest image)."""
    from PIL import Image

    if not images:
        raise ValueError("image_grid: no images")
    ncols = ncols or min(len(images), 8)
    nrows = math.ceil(len(images) / ncols)
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    canvas = Image.new("RGB", (ncols * (w + pad) + pad, nrows * (h + pad) + pad), "white")
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        canvas.paste(im.convert("RGB"), (pad + c * (w + pad), pad + r * (h + pad)))
    return canvas


def write_results(results: Sequence[GenerationResult], directory: str | Path, *, grids: bool = True) -> dict[str, Any]:
    """Write ``results`` into ``directory`` (see the module docstring); return counts.

    Raises:
        ValueError: two prompts map to the same file name.
    """
    directory = Path(directory)
    names = [safe_name(r.prompt.id) for r in results]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"prompt ids map to the same file name(s) {clashes}; give prompts distinct ids")
    lines: list[str] = []
    manifest: list[dict[str, Any]] = []
    num_images = 0
    for result, name in zip(results, names, strict=True):
        entry = _entry(result)
        images = [c.image for c in result.candidates if c.image is not None]
        if images:
            paths = []
            for rank, im in enumerate(images):
                rel = f"images/{name}/{rank}.png"
                atomic_write_bytes(directory / rel, image_to_png(im))
                paths.append(rel)
                entry["candidates"][rank]["image"] = rel
            num_images += len(paths)
            if grids:
                atomic_write_bytes(directory / "grids" / f"{name}.png", image_to_png(image_grid(images)))
                entry["grid"] = f"grids/{name}.png"
            manifest.append({"id": result.prompt.id, "text": result.prompt.rerank_text(), "images": paths})
        lines.append(json.dumps(entry, sort_keys=True, ensure_ascii=False))
    atomic_write_text(directory / "results.jsonl", "\n".join(lines) + "\n")
    if manifest:
        atomic_write_json(directory / "manifest.json", {"prompts": manifest})
    return {"num_prompts": len(results), "num_images": num_images}


def _entry(result: GenerationResult) -> dict[str, Any]:
    prompt = result.prompt
    return {
        "id": prompt.id,
        "output": prompt.output,
        "task": dict(prompt.meta).get("task", ""),
        "prompt_text": prompt.rerank_text(),
        "retrieved": [d.id for d in result.retrieved],
        "candidates": [
            {
                "rank": rank,
                "index": c.index,
                "pipeline": c.pipeline,
                "score": c.score,
                "text": c.text,
                "stop": c.stop,
                "tokens": c.tokens,
            }
            for rank, c in enumerate(result.candidates)
        ],
    }
