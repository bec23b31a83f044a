"""Every protocol end to end with real decoding on a tiny random model (plumbing, not quality).

The model is ``cm3leon_tiny`` with random weights in the trainer's export format; the
tokenizers are ``bytes`` and an untrained ``vqgan`` (``small_32``).  The checks are about
shapes, files, determinism by seed and reuse of finished generations.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from cm3leon.core.cli import cli
from cm3leon.core.config import load_config
from cm3leon.eval.protocols import (
    CaptioningConfig,
    EditingConfig,
    TextToImageConfig,
    VQAConfig,
    run_captioning,
    run_editing,
    run_text_to_image,
    run_vqa,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::cm3leon.eval.metrics.frechet.RankDeficientWarning"),
]


def _t2i(tiny, world: Path, **extra) -> TextToImageConfig:
    return load_config(TextToImageConfig, data={
        "model": tiny["model"], "num_samples": 2, "batch_size": 2, "seed": 5,
        "data": {"captions": str(world / "coco" / "annotations" / "captions_val2017.json"),
                 "ground_truth": str(world / "ground_truth" / "scenes.jsonl"), "limit": 3},
        "clip": {"options": {"path": tiny["clip"]}},
        "retrieval": {"k": 1, "retriever": "bm25", "bank": tiny["bank"]},
        "decoding": {"strategy": "cd_k_top_p"},
        **extra,
    })  # fmt: skip


def test_text_to_image(tiny, world: Path, tmp_path: Path) -> None:
    cfg = _t2i(tiny, world)
    out = run_text_to_image(cfg, tmp_path / "a")
    result = json.loads((tmp_path / "a" / "results.json").read_text())
    assert result["protocol"] == "text_to_image" and result["retrieval_k"] == 1
    assert set(result["metrics"]) >= {"fid", "clip_score", "colour_acc", "shape_acc", "colour_shape_acc",
                                      "position_acc"}  # fmt: skip
    assert math.isfinite(out["fid"]) and 0.0 <= out["clip_score"] <= 100.0
    assert (
        out["fid_features"] == "clip" and out["num_prompts"] == 3 and "chance" in out["baselines"]
    )
    rows = [
        json.loads(x)
        for x in (tmp_path / "a" / "generation" / "samples" / "results.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [len(r["retrieved"]) for r in rows] == [1, 1, 1]
    pipelines = [c["pipeline"] for c in rows[0]["candidates"]]  # cd_k_top_p: one of each
    assert pipelines[0].startswith("cfg+temperature+top_p") and pipelines[1].startswith(
        "cdk+temperature"
    )
    chosen = Image.open(result["per_prompt"][rows[0]["id"]]["image"])
    assert chosen.size == (32, 32)
    assert Image.open(tmp_path / "a" / "samples.png").size[0] == 2 * (96 + 4) + 4
    assert not result["generation"]["reused"]
    again = run_text_to_image(cfg, tmp_path / "a")
    assert json.loads((tmp_path / "a" / "results.json").read_text())["generation"]["reused"]
    assert again["fid"] == pytest.approx(out["fid"])
    run_text_to_image(cfg, tmp_path / "b")  # same seed, another directory: same images
    for r in rows:
        for c in r["candidates"]:
            assert (tmp_path / "a" / "generation" / "samples" / c["image"]).read_bytes() == (
                tmp_path / "b" / "generation" / "samples" / c["image"]).read_bytes()  # fmt: skip


def test_captioning_vqa_editing(tiny, world: Path, tmp_path: Path) -> None:
    model = tiny["model"]
    cap = load_config(CaptioningConfig, data={
        "model": model, "tokenizer": "whitespace", "decoding": {"max_new_tokens": 6},
        "data": {"annotations": str(world / "coco" / "annotations" / "captions_val2017.json"), "limit": 3},
    })  # fmt: skip
    out = run_captioning(cap, tmp_path / "cap")
    preds = json.loads((tmp_path / "cap" / "captions.json").read_text())
    assert len(preds) == 3 and all(isinstance(p["caption"], str) for p in preds)
    assert out["cider_d"] >= 0.0 and out["baselines"]["nearest_caption"]["cider_d"] > 0.0
    run_captioning(cap, tmp_path / "cap2")
    assert (
        json.loads((tmp_path / "cap2" / "captions.json").read_text()) == preds
    )  # greedy: deterministic

    vqa = load_config(VQAConfig, data={"model": model, "data": {
        "questions": str(world / "vqa2" / "v2_OpenEnded_mscoco_val2014_questions.json"),
        "annotations": str(world / "vqa2" / "v2_mscoco_val2014_annotations.json"), "limit": 4}})  # fmt: skip
    out = run_vqa(vqa, tmp_path / "vqa")
    assert 0.0 <= out["accuracy"] <= 100.0 and out["num_questions"] == 4
    assert set(out["baselines"]) >= {"majority", "majority_per_question_type"}
    rows = [
        json.loads(x)
        for x in (tmp_path / "vqa" / "generation" / "samples" / "results.jsonl")
        .read_text()
        .splitlines()
    ]
    assert all(len(r["candidates"][0]["tokens"]) <= 8 for r in rows)  # decoding.max_new_tokens

    edit = load_config(EditingConfig, data={"model": model, "data": {
        "root": str(world / "instruct_pix2pix"), "ground_truth": str(world / "ground_truth" / "edits.jsonl"),
        "limit": 2}})  # fmt: skip
    out = run_editing(edit, tmp_path / "edit")
    assert set(out) >= {
        "edit_acc",
        "preserve_acc",
        "success",
        "mse_to_target",
        "baselines",
        "num_edits",
    }
    assert out["baselines"]["target"]["success"] == 1.0
    assert Image.open(tmp_path / "edit" / "samples.png").size == (
        3 * 100 + 4,
        2 * (96 + 48 + 4) + 4,
    )


def test_protocol_command(tiny, world: Path, tmp_path: Path) -> None:
    m = tiny["model"]
    args = ["eval", "vqa", f"model.export={m['export']}", "model.text_tokenizer=bytes",
            f"model.image_tokenizer={m['image_tokenizer']}",
            f"data.questions={world / 'vqa2' / 'v2_OpenEnded_mscoco_val2014_questions.json'}",
            f"data.annotations={world / 'vqa2' / 'v2_mscoco_val2014_annotations.json'}", "data.limit=2",
            "--out", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "accuracy = " in result.output and "majority" in result.output
    generated = json.loads((tmp_path / "run" / "results.json").read_text())
    assert generated["protocol"] == "vqa"
    # the same command scores the answers it wrote, without a model
    scored = CliRunner().invoke(cli, [
        "eval", "vqa", "--predictions", str(tmp_path / "run" / "answers.json"), "partial=true",
        f"data.annotations={world / 'vqa2' / 'v2_mscoco_val2014_annotations.json'}",
        "--out", str(tmp_path / "score")], catch_exceptions=False)  # fmt: skip
    assert scored.exit_code == 0, scored.output
    rescored = json.loads((tmp_path / "score" / "results.json").read_text())
    assert rescored["metrics"] == generated["metrics"] and rescored["num_questions"] == 2
    bad = CliRunner().invoke(cli, [*args[:3], "model.text_tokenizer=nope", *args[4:]])
    assert (
        bad.exit_code != 0
        and "text tokenizer 'nope'" in bad.output
        and "Traceback" not in bad.output
    )
    bad = CliRunner().invoke(cli, [*args[:4], *args[5:]])
    assert bad.exit_code != 0 and "model.image_tokenizer: VQA prompts hold images" in bad.output
    missing = CliRunner().invoke(cli, ["eval", "captioning", "model.export=x"])
    assert (
        missing.exit_code != 0
        and "eval captioning: missing required value(s)" in missing.output
    )
