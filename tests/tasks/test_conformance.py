"""The task conformance suite, run over every registered task (built-in or installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cm3leon.core.plugin_manager import get_registries
from cm3leon.tasks.testing import TaskConformance
from tests.tasks.test_world_formats import WORLD_SOURCES

TASKS = get_registries().tasks.names()

# Record fields whose absence a built-in documents and handles itself (the suite otherwise
# requires a missing field to raise ValueError, never to render a default).
OPTIONAL_FIELDS = {
    "scienceqa": ("context", "explanation"),  # context renders "N/A"; no explanation: the direct template
    "seg_to_image": ("objects",),  # without annotations the map is SLIC superpixels of the image
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small export of the procedural world: every built-in reader's public format."""
    from cm3leon.world.export import export_world

    out = tmp_path_factory.mktemp("world")
    export_world(out, n=10, seed=0, progress=False)
    return out


class TestEveryRegisteredTask(TaskConformance):
    """Parametrises :class:`TaskConformance` over the task registry."""

    @pytest.fixture(params=TASKS)
    def task_name(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def optional_fields(self, task: Any, task_name: str) -> tuple[str, ...]:
        return (*getattr(task, "optional_fields", ()), *OPTIONAL_FIELDS.get(task_name, ()))

    @pytest.fixture
    def reader_input(self, task_name: str, request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any]]:
        if task_name not in WORLD_SOURCES:
            pytest.skip(f"no fixture in {task_name}'s format here; the plugin's own conformance test runs its reader")
        folder, split = WORLD_SOURCES[task_name]
        return request.getfixturevalue("world") / folder, {"split": split}


def test_all_table5_tasks_are_registered() -> None:
    table5 = {
        "instructpix2pix", "ocr", "object_detection", "edge_to_image", "seg_to_image", "hed_to_image",
        "pose_to_image", "depth_to_image", "norm_to_image", "scribble_to_image", "coco_captioning",
        "flickr30k", "image_paragraph", "localized_narratives", "vqa2", "vizwiz", "okvqa", "scienceqa",
    }  # fmt: skip
    assert table5 <= set(TASKS)
