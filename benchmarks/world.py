"""Throughput of the procedural world, against a PIL ``ImageDraw`` renderer, same run.

Rows (median of ``--repeats``, interleaved so background load hits all alike):

* ``scenes`` -- sample + render (pixels and every ground-truth map) scenes/s;
* ``pil_reference`` -- the same scenes drawn with ``PIL.ImageDraw`` (pixels only: no
  instance/segmentation/depth maps), the usual way to draw such scenes;
  ``ratio`` = ours / reference;
* ``examples`` -- every record of a scene (captions, paragraph, narrative, VQA, OK-VQA,
  VizWiz, ScienceQA, edit + re-render) examples/s;
* ``scorer`` -- :func:`detect_objects` + :func:`score_text_to_image` images/s;
* ``export`` -- ``export_world`` of all formats to a temporary directory, scenes/s.

Usage::

    uv run python benchmarks/world.py                     # JSON on stdout
    uv run python benchmarks/world.py --n 2000 --output runs/bench/world.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/world.py` puts benchmarks/ first on sys.path, where a sibling script
# named like a package (benchmarks/tokenizers.py) would shadow the installed one.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from cm3leon.core.io import atomic_write_json
from cm3leon.world.export import export_world
from cm3leon.world.font import text_bitmap
from cm3leon.world.records import World
from cm3leon.world.render import render_scene
from cm3leon.world.scene import (
    BACKGROUND_RGB,
    COLOURS,
    INK_RGB,
    Scene,
    WorldConfig,
    sample_scene,
    scene_rng,
)
from cm3leon.world.scorer import score_text_to_image


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="scenes per timed run")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--export-n", type=int, default=300, help="scenes in the export run (0 = skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON here (atomically)")
    return p.parse_args(argv)


def _pil_render(scene: Scene) -> Image.Image:
    """Reference: the scene's pixels drawn with ImageDraw primitives."""
    im = Image.new("RGB", (scene.image_size, scene.image_size), BACKGROUND_RGB)
    draw = ImageDraw.Draw(im)
    if scene.text is not None:
        mask = Image.fromarray(
            text_bitmap(scene.text.word, scene.text.scale).astype(np.uint8) * 255
        )
        im.paste(INK_RGB, scene.text.origin, mask)
    elements = [(o.z, o) for o in scene.objects] + (
        [(scene.figure.z, scene.figure)] if scene.figure else []
    )
    for _, el in sorted(elements, key=lambda e: e[0]):
        if hasattr(el, "keypoints"):
            kp = el.keypoints
            for a, b in (
                (5, 7),
                (7, 9),
                (6, 8),
                (8, 10),
                (11, 13),
                (13, 15),
                (12, 14),
                (14, 16),
                (5, 6),
                (11, 12),
            ):
                draw.line([kp[a], kp[b]], fill=INK_RGB, width=int(el.thickness))
            r = el.head_radius
            draw.ellipse([kp[0][0] - r, kp[0][1] - r, kp[0][0] + r, kp[0][1] + r], fill=INK_RGB)
            continue
        (x, y), r, c = el.center, el.radius, COLOURS[el.colour]
        if el.shape == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=c)
        elif el.shape == "square":
            draw.rectangle([x - 0.85 * r, y - 0.85 * r, x + 0.85 * r, y + 0.85 * r], fill=c)
        elif el.shape == "triangle":
            draw.polygon([(x, y - r), (x + r, y + 0.8 * r), (x - r, y + 0.8 * r)], fill=c)
        else:
            w = 0.36 * r
            draw.rectangle([x - w, y - r, x + w, y + r], fill=c)
            draw.rectangle([x - r, y - w, x + r, y + w], fill=c)
    return im


def _rate(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    count = fn()
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    config = WorldConfig(image_size=args.image_size)
    world = World(args.seed, config)
    n = args.n
    scenes = [sample_scene(scene_rng(args.seed, i), config, index=i) for i in range(n)]
    images = [render_scene(s).image for s in scenes[:300]]

    def ours() -> int:
        for i in range(n):
            render_scene(sample_scene(scene_rng(args.seed, i), config, index=i))
        return n

    def reference() -> int:
        for i in range(n):
            _pil_render(sample_scene(scene_rng(args.seed, i), config, index=i))
        return n

    def examples() -> int:
        for i in range(n // 5):
            world.example(i)
        return n // 5

    def scorer() -> int:
        for im, s in zip(images, scenes, strict=False):
            score_text_to_image(im, s)
        return len(images)

    runs: dict[str, list[float]] = {"scenes": [], "pil_reference": [], "examples": [], "scorer": []}
    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats}", file=sys.stderr)
        runs["scenes"].append(_rate(ours))
        runs["pil_reference"].append(_rate(reference))
        runs["examples"].append(_rate(examples))
        runs["scorer"].append(_rate(scorer))
    result = {
        "benchmark": "world",
        "image_size": args.image_size,
        "n": n,
        "repeats": args.repeats,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "per_second": {k: round(statistics.median(v), 1) for k, v in runs.items()},
        "unit": {
            "scenes": "scenes/s",
            "pil_reference": "scenes/s",
            "examples": "examples/s",
            "scorer": "images/s",
        },
    }
    result["ratio"] = round(
        result["per_second"]["scenes"] / result["per_second"]["pil_reference"], 3
    )
    if args.export_n:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            export_world(
                tmp, n=args.export_n, seed=args.seed, image_size=args.image_size, progress=False
            )
            result["per_second"]["export_all_formats"] = round(
                args.export_n / (time.perf_counter() - start), 1
            )
            result["unit"]["export_all_formats"] = "scenes/s"
    if args.output:
        atomic_write_json(args.output, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
