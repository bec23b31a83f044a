"""Chance and prompt-ignoring floors of the text-to-image scores (:mod:`.scorer`).

* :func:`object_chance` -- a bound on the expected headline ``object_acc`` of *any* image
  made without reading its prompt (however many shapes and colours it shows);
* :func:`other_scene_baseline` -- renders of other scenes scored against each scene (a
  perfect renderer of the wrong scene);
* :func:`mean_image_baseline` -- the pixel-wise mean of the scenes' renders (a model that
  regresses to the mean);
* :func:`~cm3leon.world.scorer.shuffled_baseline` -- any images against other
  scenes' truth (a model's own images, prompts shuffled).

All return the units of :func:`~cm3leon.world.scorer.score_text_to_image`, so a
result and its floors sit side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cm3leon.world.render import render_scene
from cm3leon.world.scene import Scene
from cm3leon.world.scorer import (
    PAIRS,
    _specs,
    aggregate,
    detect_objects,
    score_text_to_image,
    shuffled_baseline,
)

__all__ = ["mean_image_baseline", "object_chance", "other_scene_baseline"]


def object_chance(truths: Sequence[Any]) -> float:
    """Bound on the mean ``object_acc`` of images drawn without reading their prompts.

    The world draws each object's colour+shape uniformly from the ``P`` = 24 pairs, so a
    scene of ``n`` objects holds a given pair with probability at most ``n / P``.  An image
    made without the prompt that shows ``d`` objects therefore expects at most ``d n / P``
    matches, and ``object_acc`` at most ``d n / P / max(d, n) <= n / P``: neither the
    count nor a clutter of every colour and shape beats it.

    Args:
        truths: the ground truths (as for :func:`score_text_to_image`).

    Returns:
        The mean of ``n / P`` over ``truths``.
    """
    if not truths:
        raise ValueError("object_chance needs at least one ground truth")
    return float(np.mean([len(_specs(t)) for t in truths])) / PAIRS


def _scenes(truths: Sequence[Scene | Mapping[str, Any]]) -> list[Scene]:
    return [t if isinstance(t, Scene) else Scene.from_dict(t) for t in truths]


def other_scene_baseline(
    truths: Sequence[Scene | Mapping[str, Any]], *, shifts: int | None = None, seed: int = 0
) -> dict[str, float]:
    """Mean scores of the *renders* of other scenes against each scene's truth.

    The floor of a perfect renderer that draws a world scene but not the prompt's
    (:func:`shuffled_baseline` over the scenes' own renders; ``shifts`` and ``seed`` as
    there).  ``truths`` are :class:`Scene` objects or scene dicts.
    """
    scenes = _scenes(truths)
    return shuffled_baseline([render_scene(s).image for s in scenes], scenes, seed, shifts=shifts)


def mean_image_baseline(truths: Sequence[Scene | Mapping[str, Any]]) -> dict[str, float]:
    """Mean scores of the pixel-wise mean of the scenes' renders against each scene.

    The one image closest (in squared error) to all of them: what a model that regresses
    to the mean draws.  ``truths`` are :class:`Scene` objects or scene dicts of one size.
    """
    scenes = _scenes(truths)
    sizes = sorted({s.image_size for s in scenes})
    if len(sizes) != 1:
        raise ValueError(f"mean_image_baseline needs scenes of one image size, got sizes {sizes}")
    renders = np.stack([render_scene(s).image for s in scenes]).astype(np.float32)  # (N, H, W, 3)
    mean = renders.mean(0).round().astype(np.uint8)  # (H, W, 3)
    dets = detect_objects(mean)
    return aggregate([score_text_to_image(mean, s, detections=dets) for s in scenes])
