"""Small-CLIP training through Composer: resumption, caching, recall on the world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cm3leon.retrieval.config import ClipTrainConfig, DocumentsConfig
from cm3leon.retrieval.train_clip import train_clip
from tests.retrieval.synthetic import shape_documents

# A 1-layer, 32-wide model: a few seconds per run on 2 CPU cores.
TINY = {"embed_dim": 32, "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"width": 32, "heads": 2, "layers": 1, "context_length": 24}}


def tiny_cfg(out: Path, **kw) -> ClipTrainConfig:
    base = dict(output=str(out), model_overrides=TINY, eval_size=40, batch_size=16, max_duration="4ba",
                save_interval="2ba", warmup="1ba", lr=1e-3)
    return ClipTrainConfig(**{**base, **kw})


class Interrupt(Exception):
    pass


def interrupt_at(batch: int):
    from composer import Callback, Event

    class Stop(Callback):
        def run_event(self, event, state, logger) -> None:
            if event == Event.BATCH_END and int(state.timestamp.batch) == batch:
                raise Interrupt

    return Stop()


def test_interrupted_training_resumes_from_checkpoint(tmp_path: Path) -> None:
    docs = shape_documents(120, seed=1)
    cfg = tiny_cfg(tmp_path / "run")
    with pytest.raises(Interrupt):
        train_clip(cfg, documents=docs, progress=False, extra_callbacks=[interrupt_at(3)])
    assert not (tmp_path / "run" / "encoder").exists()  # nothing exported from a broken run
    assert (tmp_path / "run" / "checkpoints" / "ep0-ba2-rank0.pt").is_file()
    metrics = train_clip(cfg, documents=docs, progress=False)
    assert metrics["resumed_from_batch"] == 2
    assert (tmp_path / "run" / "encoder" / "COMPLETE").is_file()
    assert set(metrics["eval"]) >= {"recall@1", "recall@5", "chance@1", "chance@5"}
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["fingerprint"] == metrics["fingerprint"]
    # Same settings again: a cache hit, no training.
    assert train_clip(cfg, documents=docs, progress=False, extra_callbacks=[interrupt_at(1)]) == saved


def test_a_run_with_other_settings_is_not_resumed(tmp_path: Path) -> None:
    docs = shape_documents(120, seed=1)
    with pytest.raises(Interrupt):
        train_clip(tiny_cfg(tmp_path / "run"), documents=docs, progress=False, extra_callbacks=[interrupt_at(3)])
    with pytest.raises(ValueError, match="different settings \\(lr\\)"):
        train_clip(tiny_cfg(tmp_path / "run", lr=5e-4), documents=docs, progress=False)


def test_too_few_documents_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need more than eval_size"):
        train_clip(tiny_cfg(tmp_path / "run"), documents=shape_documents(30), progress=False)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_trained_small_clip_retrieves_the_right_caption_on_the_world(tmp_path: Path) -> None:
    """The closing-note numbers: image -> caption recall of cm3leon-clip-tiny on world data."""
    from cm3leon.core.plugin_manager import get_registries
    from cm3leon.core.shards import DocumentShardWriter

    world = get_registries().sources.build("world", None, n=6000, seed=0, image_size=32)
    with DocumentShardWriter(tmp_path / "docs") as writer:
        for doc in world:
            writer.write(doc)
    cfg = ClipTrainConfig(output=str(tmp_path / "clip"), data=DocumentsConfig(shards=[str(tmp_path / "docs")]),
                          eval_size=500, batch_size=128, max_duration="300ba", warmup="30ba", save_interval="100ba")
    metrics = train_clip(cfg, progress=False)
    ev = metrics["eval"]
    print(json.dumps(ev, indent=2))
    assert ev["recall@1"] > 10 * ev["chance@1"]
    assert ev["recall@5"] > 5 * ev["chance@5"]
