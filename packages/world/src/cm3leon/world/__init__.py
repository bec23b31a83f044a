"""The procedural world: small scenes with full ground truth, records for every Table 5
task in the public dataset formats, and a model-free scorer.

Quick tour::

    from cm3leon.world import World, score_text_to_image

    world = World(seed=0)                  # deterministic, random access, infinite
    ex = world.example(42)                 # scene, render, captions, VQA, edit, ...
    ex.render.image                        # (32, 32, 3) uint8
    score_text_to_image(ex.image, ex.scene)["object_acc"]   # 1.0 (the headline, HEADLINE)

Modules: :mod:`.scene` (vocabulary, sampling), :mod:`.render` (pixels and ground-truth
maps), :mod:`.language` (captions, paragraphs, narratives), :mod:`.questions` (VQA v2,
OK-VQA, VizWiz, ScienceQA), :mod:`.edits` (InstructPix2Pix edits), :mod:`.records`
(:class:`World`, the ``world`` source), :mod:`.formats` / :mod:`.export` (public
formats), :mod:`.scorer` and its chance and floors :mod:`.baselines`, :mod:`.cli`
(``cm3leon world``).
"""

from __future__ import annotations

from cm3leon.world.baselines import (
    mean_image_baseline,
    object_chance,
    other_scene_baseline,
)
from cm3leon.world.edits import EDIT_KINDS, Edit, apply_edit, sample_edit
from cm3leon.world.export import FORMATS, export_world, read_manifest
from cm3leon.world.language import ObjectSpec, canonical_caption, parse_caption
from cm3leon.world.questions import Question
from cm3leon.world.records import SPLITS, Example, World, WorldSource, world_source
from cm3leon.world.render import CATEGORIES, Render, category_id, render_scene
from cm3leon.world.scene import (
    COLOURS,
    POSES,
    SHAPES,
    SIZES,
    Scene,
    StickFigure,
    TextItem,
    WorldConfig,
    WorldObject,
)
from cm3leon.world.scienceqa import ScienceProblem
from cm3leon.world.scorer import (
    CHANCE,
    HEADLINE,
    DetectedObject,
    aggregate,
    detect_objects,
    score_edit,
    score_text_to_image,
    shuffled_baseline,
)

__all__ = [
    "CATEGORIES",
    "CHANCE",
    "COLOURS",
    "EDIT_KINDS",
    "FORMATS",
    "HEADLINE",
    "POSES",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "DetectedObject",
    "Edit",
    "Example",
    "ObjectSpec",
    "Question",
    "Render",
    "Scene",
    "ScienceProblem",
    "StickFigure",
    "TextItem",
    "World",
    "WorldConfig",
    "WorldObject",
    "WorldSource",
    "aggregate",
    "apply_edit",
    "canonical_caption",
    "category_id",
    "detect_objects",
    "export_world",
    "mean_image_baseline",
    "object_chance",
    "other_scene_baseline",
    "parse_caption",
    "read_manifest",
    "render_scene",
    "sample_edit",
    "score_edit",
    "score_text_to_image",
    "shuffled_baseline",
    "world_source",
]
