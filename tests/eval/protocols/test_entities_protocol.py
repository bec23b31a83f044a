"""The tail-entity text-to-image protocol: prompts naming world entities, scored from pixels."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cm3leon.core.config import ConfigError, load_config
from cm3leon.eval.datasets import read_world_entities
from cm3leon.eval.protocols import TextToImageConfig, run_text_to_image
from cm3leon.world import export_world
from cm3leon.world.entities import EntityCatalogue, render_entity
from tests.eval.protocols._oracle import ORACLE, SEEN

MODEL = {"export": "unused", "text_tokenizer": "bytes", "image_tokenizer": "unused"}


@pytest.fixture(scope="module")
def tail_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tail") / "world"
    export_world(root, n=8, formats="entities", entity_docs=320, entities=40, progress=False)
    return root


def _mosaic_rows(tail_world: Path) -> list[dict]:
    """The protocol's prompts: test documents of the full-frame view (panels are not asked for)."""
    rows = read_world_entities(tail_world / "entities" / "documents.jsonl", split="test")
    assert {r["view"] for r in rows} == {"mosaic", "panel"}
    return [r for r in rows if r["view"] == "mosaic"][:12]


def _config(tail_world: Path, tiny, limit: int = 12) -> TextToImageConfig:
    return load_config(TextToImageConfig, data={
        "model": MODEL, "generator": "oracle", "num_samples": 1,
        "data": {"entities": str(tail_world / "entities" / "documents.jsonl"), "split": "test",
                 "limit": limit},
        "clip": {"options": {"path": tiny["clip"]}},
    })  # fmt: skip


def test_the_entity_itself_scores_perfectly_and_is_broken_down_by_frequency(
    tail_world: Path, tiny, oracle, tmp_path: Path
) -> None:
    catalogue = EntityCatalogue(0, 40)
    rows = _mosaic_rows(tail_world)
    for r in rows:
        path = tmp_path / "truth" / f"{r['id']}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(render_entity(catalogue.by_name(r["entity"]))).save(path)
        ORACLE[str(r["id"])] = path
    out = run_text_to_image(_config(tail_world, tiny), tmp_path / "run", registries=oracle)
    assert [e["text"] for e in SEEN] == [r["caption"] for r in rows]
    assert out["entity_cell_acc"] == 1.0 and out["entity_match"] == 1.0
    assert out["baselines"]["entity_chance"]["entity_cell_acc"] == pytest.approx(1 / 6)
    # each image scored against other prompts' entities: the prompt-ignoring floor
    assert out["baselines"]["entity_shuffled"]["entity_cell_acc"] < 0.5
    assert out["baselines"]["entity_shuffled"]["entity_match"] < 0.5
    buckets = out["by_train_count"]
    assert sum(b["n"] for b in buckets.values()) == 12
    counts = {r["train_count"] for r in rows}
    assert any(c <= 2 for c in counts) and any(c >= 10 for c in counts)  # head and tail both
    assert all(b["entity_match"] == 1.0 for b in buckets.values())


def test_one_image_for_every_prompt_matches_only_its_own_entity(
    tail_world: Path, tiny, oracle, tmp_path: Path
) -> None:
    catalogue = EntityCatalogue(0, 40)
    rows = _mosaic_rows(tail_world)
    head = catalogue[0]
    path = tmp_path / "head.png"
    Image.fromarray(render_entity(head)).save(path)
    ORACLE.update({str(r["id"]): path for r in rows})
    out = run_text_to_image(_config(tail_world, tiny), tmp_path / "run", registries=oracle)
    share = sum(r["entity"] == head.name for r in rows) / len(rows)
    assert 0 < share < 1
    assert out["entity_match"] == pytest.approx(share)
    assert out["entity_cell_acc"] < share + (1 - share) * 6 / 16


def test_entity_prompts_are_their_own_prompt_set(tail_world: Path) -> None:
    docs = str(tail_world / "entities" / "documents.jsonl")
    with pytest.raises(ConfigError, match="data.entities is a prompt set of its own"):
        load_config(TextToImageConfig, data={"data": {"entities": docs, "ground_truth": docs}})
    with pytest.raises(Exception, match="no entity documents in split 'nope'"):
        read_world_entities(docs, split="nope")


def test_export_refuses_the_entities_format_without_a_tail(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a long tail"):
        export_world(tmp_path / "w", n=4, formats="entities", progress=False)
    manifest = export_world(tmp_path / "w", n=4, formats="all", progress=False)
    assert "entities" not in manifest["written"]
