"""ControlNet-style condition extractors, built on scikit-image.

Every extractor is a small frozen dataclass (its fields are the factory options)
whose instances are callables ``(image, record=None) -> PIL.Image`` returning an RGB
image the same size as ``image``, ready for the image tokenizer.  They are
registered by name through ``cm3leon_register_condition_extractors``:

==================  =====================================================  ==================
name                what it draws                                          needs in record
==================  =====================================================  ==================
``canny``           Canny edges (white on black)                           --
``soft_edge``       multi-scale soft boundaries, a stand-in for HED        --
``scribble``        thinned, jittered soft edges, like a child's scribble  --
``segmentation``    class-coloured map from annotations, else superpixels  ``objects`` (opt.)
``depth``           depth map, near = bright                               ``depth``
``normals``         surface normals derived from the depth map             ``depth``
``pose``            OpenPose-style skeletons from COCO keypoints           ``keypoints``
==================  =====================================================  ==================

A learned extractor (e.g. the HED network ControlNet used) plugs in by registering a
:class:`~cm3leon.core.registry.ConditionExtractorSpec` under a new name and selecting
it with the task option ``extractor``; see ``docs/writing-plugins.md``.
"""

from __future__ import annotations

from cm3leon.tasks.conditions.edges import CannyExtractor, ScribbleExtractor, SoftEdgeExtractor
from cm3leon.tasks.conditions.geometry import DepthExtractor, NormalsExtractor
from cm3leon.tasks.conditions.pose import PoseExtractor
from cm3leon.tasks.conditions.segmentation import SegmentationExtractor

__all__ = [
    "CannyExtractor",
    "DepthExtractor",
    "NormalsExtractor",
    "PoseExtractor",
    "ScribbleExtractor",
    "SegmentationExtractor",
    "SoftEdgeExtractor",
]
