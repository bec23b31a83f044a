"""The task conformance suite, run over every registered task (built-in or installed)."""

from __future__ import annotations

import pytest

from cm3leon.core.plugin_manager import get_registries
from cm3leon.tasks.testing import TaskConformance

TASKS = get_registries().tasks.names()


class TestEveryRegisteredTask(TaskConformance):
    """Parametrises :class:`TaskConformance` over the task registry."""

    @pytest.fixture(params=TASKS)
    def task_name(self, request: pytest.FixtureRequest) -> str:
        return request.param


def test_all_table5_tasks_are_registered() -> None:
    table5 = {
        "instructpix2pix", "ocr", "object_detection", "edge_to_image", "seg_to_image", "hed_to_image",
        "pose_to_image", "depth_to_image", "norm_to_image", "scribble_to_image", "coco_captioning",
        "flickr30k", "image_paragraph", "localized_narratives", "vqa2", "vizwiz", "okvqa", "scienceqa",
    }  # fmt: skip
    assert table5 <= set(TASKS)
