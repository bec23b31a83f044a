"""Every task's reader reads the procedural world's export of its public format.

``cm3leon.world`` writes each Table 5 dataset in its public layout; the demo feeds
those exports to these readers, so the two must agree.  One small export, every task
read and rendered, plus one ``cm3leon data prepare --task`` run through core's CLI.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.registry import resolve_object

# task -> (export format folder, split)
WORLD_SOURCES = {
    "coco_captioning": ("coco", "train2017"), "edge_to_image": ("coco", "train2017"),
    "hed_to_image": ("coco", "train2017"), "scribble_to_image": ("coco", "train2017"),
    "object_detection": ("coco", "train2017"), "seg_to_image": ("coco", "train2017"),
    "pose_to_image": ("coco", "train2017"), "depth_to_image": ("depth", "train2017"),
    "norm_to_image": ("depth", "train2017"), "flickr30k": ("flickr30k", "train"),
    "image_paragraph": ("image_paragraph", "train"), "localized_narratives": ("localized_narratives", "train"),
    "vqa2": ("vqa2", "train2014"), "okvqa": ("okvqa", "train2014"), "vizwiz": ("vizwiz", "train"),
    "scienceqa": ("scienceqa", "train"), "instructpix2pix": ("instruct_pix2pix", "train"),
    "ocr": ("ocr", "train"),
}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cm3leon.world.export import export_world

    out = tmp_path_factory.mktemp("world")
    export_world(out, n=40, seed=0, progress=False)
    return out


def test_covers_every_builtin_task() -> None:
    assert set(WORLD_SOURCES) == {r.spec.name for r in get_registries().tasks if r.distribution == "cm3leon-tasks"}


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(WORLD_SOURCES))
def test_reader_reads_world_export(world: Path, name: str) -> None:
    folder, split = WORLD_SOURCES[name]
    spec = get_registries().tasks.get(name)
    stats: Counter = Counter()
    records = list(resolve_object(spec.reader)(world / folder, split=split, stats=stats))
    assert records and stats["records"] == len(records) and not stats.get("skipped"), stats
    task = spec.build()
    for i, record in enumerate(records[:5]):
        doc = task.render(record, rng=np.random.default_rng(i))
        assert set(doc.modalities) == set(spec.inputs) | set(spec.outputs)


@pytest.mark.integration
def test_data_prepare_task_on_world(world: Path, tmp_path: Path) -> None:
    from cm3leon.core.cli import cli
    from cm3leon.core.shards import iter_documents

    out = tmp_path / "vqa"
    result = CliRunner().invoke(cli, ["data", "prepare", "--task", "vqa2", str(world / "vqa2"), "-o",
                                      "split=val2014", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    docs = list(iter_documents(out))
    assert report["written"] == len(docs) > 0 and report["skipped"] == 0
    assert all(d.meta["task"] == "vqa2" and d.modalities == ("text", "image") for d in docs)


@pytest.mark.integration
def test_shipped_world_mixture_builds(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """configs/mixtures/world_tiny.yaml, run from a directory whose runs/world is the export."""
    from cm3leon.core.config import load_config
    from cm3leon.tasks.mixture import MixtureConfig, build_mixture

    config = Path(__file__).resolve().parents[2] / "configs" / "mixtures" / "world_tiny.yaml"
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "world").symlink_to(world, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(MixtureConfig, config, ["output.format=documents"])
    report = build_mixture(cfg, progress=False)
    assert set(report.count) == set(WORLD_SOURCES) and all(c > 0 for c in report.count.values())
    assert all(0.3 <= f <= 3.0 for f in report.factor.values())
    assert report.written == sum(report.count.values())
