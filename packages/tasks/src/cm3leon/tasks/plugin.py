"""Built-in components of ``cm3leon-tasks``, registered like any third-party plugin.

Exposed through ``[project.entry-points.cm3leon] tasks = "cm3leon.tasks.plugin"``.
Every factory and reader is a lazy ``"module:attr"`` string, so ``cm3leon plugins
list`` imports neither scikit-image nor pyarrow.

Readers follow one signature (documented in :mod:`cm3leon.tasks.readers`)::

    reader(path, *, split=None, skip_bad=False, stats=None, **options) -> Iterator[record]
"""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import (
    CommandSpec,
    ConditionExtractorSpec,
    ConfigSchemaSpec,
    TaskSpec,
)

_B = "cm3leon.tasks.builtin"
_R = "cm3leon.tasks.readers"

# name, module:factory, description, inputs, outputs, reader
_TASKS: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...], str], ...] = (
    ("instructpix2pix", "instructpix2pix:instructpix2pix", "Text-guided image editing (InstructPix2Pix).",
     ("text", "image"), ("image",), "pix2pix:read_instructpix2pix"),
    ("ocr", "ocr:ocr", "How-to-write: draw the given text (OCR data).",
     ("text",), ("image",), "ocr:read_ocr"),
    ("object_detection", "object_detection:object_detection",
     "Spatially grounded generation: caption + objects at discretised boxes -> image.",
     ("text",), ("image",), "coco:read_coco_instances"),
    ("edge_to_image", "edge_to_image:edge_to_image", "Canny edges + caption -> image.",
     ("image", "text"), ("image",), "coco:read_coco_images"),
    ("seg_to_image", "seg_to_image:seg_to_image", "Segmentation map + caption -> image.",
     ("image", "text"), ("image",), "coco:read_coco_instances"),
    ("hed_to_image", "hed_to_image:hed_to_image", "Soft (HED-style) edges + caption -> image.",
     ("image", "text"), ("image",), "coco:read_coco_images"),
    ("pose_to_image", "pose_to_image:pose_to_image", "OpenPose-style skeleton + caption -> image.",
     ("image", "text"), ("image",), "coco:read_coco_keypoints"),
    ("depth_to_image", "depth_to_image:depth_to_image", "Depth map + caption -> image.",
     ("image", "text"), ("image",), "coco:read_coco_depth"),
    ("norm_to_image", "norm_to_image:norm_to_image", "Surface normals (from depth) + caption -> image.",
     ("image", "text"), ("image",), "coco:read_coco_depth"),
    ("scribble_to_image", "scribble_to_image:scribble_to_image", "Children's scribble + caption -> image.",
     ("image", "text"), ("image",), "coco:read_coco_images"),
    ("coco_captioning", "coco_captioning:coco_captioning", "MS-COCO captioning.",
     ("image",), ("text",), "coco:read_coco_captions"),
    ("flickr30k", "flickr30k:flickr30k", "Flickr30k captioning (Karpathy split JSON).",
     ("image",), ("text",), "flickr30k:read_flickr30k"),
    ("image_paragraph", "image_paragraph:image_paragraph", "Image Paragraph long captions.",
     ("image",), ("text",), "paragraph:read_image_paragraph"),
    ("localized_narratives", "localized_narratives:localized_narratives",
     "Localized Narratives long narrations.", ("image",), ("text",),
     "narratives:read_localized_narratives"),
    ("vqa2", "vqa2:vqa2", "VQA v2 visual question answering.",
     ("image", "text"), ("text",), "vqa:read_vqa2"),
    ("vizwiz", "vizwiz:vizwiz", "VizWiz visual question answering.",
     ("image", "text"), ("text",), "vqa:read_vizwiz"),
    ("okvqa", "okvqa:okvqa", "OK-VQA outside-knowledge visual question answering.",
     ("image", "text"), ("text",), "vqa:read_okvqa"),
    ("scienceqa", "scienceqa:scienceqa", "ScienceQA multiple choice with context (and reasoning).",
     ("image", "text"), ("text",), "scienceqa:read_scienceqa"),
)  # fmt: skip

_EXTRACTORS: tuple[tuple[str, str, str], ...] = (
    ("canny", "edges:CannyExtractor", "Canny edges (scikit-image), white on black."),
    ("soft_edge", "edges:SoftEdgeExtractor", "Multi-scale soft boundaries: the HED stand-in."),
    ("scribble", "edges:ScribbleExtractor", "Thinned, jittered soft edges (children's scribble)."),
    ("segmentation", "segmentation:SegmentationExtractor",
     "Class-coloured map from COCO masks, else mean-coloured superpixels."),
    ("depth", "geometry:DepthExtractor", "Inverse depth from the record's depth map (near = bright)."),
    ("normals", "geometry:NormalsExtractor", "Surface normals derived from the record's depth map."),
    ("pose", "pose:PoseExtractor", "OpenPose-style skeletons from COCO keypoints."),
)  # fmt: skip


@hookimpl
def cm3leon_register_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(name, f"{_B}.{factory}", description, inputs=inputs, outputs=outputs,
                 reader=f"{_R}.{reader}")
        for name, factory, description, inputs, outputs, reader in _TASKS
    ]  # fmt: skip


@hookimpl
def cm3leon_register_condition_extractors() -> list[ConditionExtractorSpec]:
    return [
        ConditionExtractorSpec(name, f"cm3leon.tasks.conditions.{factory}", description)
        for name, factory, description in _EXTRACTORS
    ]


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "tasks",
            "cm3leon.tasks.cli:tasks_command",
            "SFT tasks: list them, render a record, build a balanced SFT mixture.",
        )
    ]


@hookimpl
def cm3leon_register_config_schemas() -> list[ConfigSchemaSpec]:
    return [
        ConfigSchemaSpec(
            "sft_mixture",
            "cm3leon.tasks.mixture:MixtureConfig",
            "SFT task mixture: tasks, weights, sources, 3/0.3 balancing, output shards.",
            directories=("mixtures",),
        )
    ]
