"""A two-axis ablation of the text-to-image protocol on the tiny random model, end to end:
k x decoding strategy -> results table, pivot tables and plots; a second invocation skips
every finished run (and reuses no generation it does not need)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cm3leon.eval.ablation.execute import run_ablation

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::cm3leon.eval.metrics.frechet.RankDeficientWarning"),
]


def test_two_axis_text_to_image_ablation(tiny, world: Path, tmp_path: Path) -> None:
    ablation = {
        "name": "tiny_t2i",
        "vars": {"world": str(world)},
        "base": {
            "runner": "text_to_image",
            "config": {
                "model": tiny["model"],
                "data": {
                    "ground_truth": "${vars.world}/ground_truth/scenes.jsonl",
                    "split": "val",
                    "limit": 3,
                },
                "clip": {"options": {"path": tiny["clip"]}},
                "retrieval": {"retriever": "bm25", "bank": tiny["bank"]},
                "num_samples": 2,
                "batch_size": 3,
            },
        },
        "matrix": {
            "k": {"key": "retrieval.k", "values": [0, 1]},
            "decoding": {"key": "decoding.strategy", "values": ["top_p", "cd_k"]},
        },
        "run_name": "k${matrix.k}-${matrix.decoding}",
        "report": {
            "tables": [
                {"rows": "decoding", "columns": "k", "value": "object_acc"},
                {"rows": "decoding", "columns": "k", "value": "colour_shape_acc"},
            ],
            "plots": [{"x": "k", "y": "fid", "series": "decoding"}],
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text("# cm3leon ablate tiny.yaml\n" + yaml.safe_dump(ablation, sort_keys=False))
    out = tmp_path / "out"
    first = run_ablation(path, out_dir=out, progress=False)
    assert [o.status for o in first.outcomes] == ["done"] * 4
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["run"] for r in rows] == ["k0-top_p", "k0-cd_k", "k1-top_p", "k1-cd_k"]
    assert all(
        r["fid_features"] == "clip" and float(r["baselines.chance.colour_shape_acc"]) == 1 / 24
        for r in rows
    )
    for r in rows:  # the headline next to the old measure, with every floor of the same run
        for key in (
            "object_acc",
            "object_precision",
            "object_recall",
            "object_f1",
            "baselines.chance.object_acc",
            "baselines.shuffled.object_acc",
            "baselines.other_scene.object_acc",
            "baselines.mean_image.object_acc",
        ):
            assert 0.0 <= float(r[key]) <= 1.0, key
    assert (out / "table-object_acc-decoding-x-k.csv").is_file()
    table = list(csv.reader((out / "table-colour_shape_acc-decoding-x-k.csv").open()))
    assert table[0] == ["decoding \\ k", "0", "1"] and [r[0] for r in table[1:]] == [
        "top_p",
        "cd_k",
    ]
    plot = out / "plot-fid-vs-k-by-decoding.png"
    assert Image.open(plot).size[0] > 300
    assert "colour_shape_acc" in (out / "results.md").read_text()
    for run in ("k0-top_p", "k1-cd_k"):
        assert (out / "runs" / run / "results.json").is_file() and (
            out / "runs" / run / "samples.png"
        ).is_file()
    stamp = (out / "runs" / "k1-cd_k" / "generation" / "generation.json").stat().st_mtime_ns
    second = run_ablation(path, out_dir=out, progress=False)
    assert [o.status for o in second.outcomes] == ["skipped"] * 4
    assert [o.results for o in second.outcomes] == [o.results for o in first.outcomes]
    assert (out / "runs" / "k1-cd_k" / "generation" / "generation.json").stat().st_mtime_ns == stamp
