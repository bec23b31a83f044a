"""`cm3leon eval ...` and `cm3leon ablate` through the real console entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.eval.metrics.frechet import GaussianStats, frechet_distance

ROOT = Path(__file__).resolve().parents[2]


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_eval_protocol_commands_score_prediction_files(tmp_path: Path) -> None:
    (tmp_path / "res.json").write_text(
        json.dumps(
            [{"image_id": 1, "caption": "a red cube"}, {"image_id": 2, "caption": "blue ball"}]
        )
    )
    (tmp_path / "refs.json").write_text(
        json.dumps({"1": ["a red cube", "red cube"], "2": ["a blue ball"]})
    )
    out = _invoke("eval", "captioning", "--predictions", str(tmp_path / "res.json"),
                  f"data.annotations={tmp_path / 'refs.json'}", "tokenizer=whitespace",
                  "--out", str(tmp_path / "c"))  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "c" / "results.json").read_text())
    assert "cider_d = " in out.output and result["num_images"] == 2
    assert result["config"]["predictions"] == str(tmp_path / "res.json")

    (tmp_path / "vres.json").write_text(json.dumps([{"question_id": 5, "answer": "yes"}]))
    (tmp_path / "vann.json").write_text(
        json.dumps({"annotations": [{"question_id": 5, "answers": ["yes"] * 10}]})
    )
    out = _invoke("eval", "vqa", "--predictions", str(tmp_path / "vres.json"),
                  f"data.annotations={tmp_path / 'vann.json'}", "--out", str(tmp_path / "v"))  # fmt: skip
    assert out.exit_code == 0 and "accuracy = 100.0000" in out.output

    rng = np.random.default_rng(0)
    a = GaussianStats.from_features(rng.standard_normal((50, 3)))
    b = GaussianStats.from_features(rng.standard_normal((50, 3)) + 1.0)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    out = _invoke(
        "eval",
        "fid",
        str(tmp_path / "a.npz"),
        str(tmp_path / "b.npz"),
        "--out",
        str(tmp_path / "f.json"),
    )
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "f.json").read_text())["metrics"]["fid"] == frechet_distance(a, b)


def test_eval_vqa_version_option(tmp_path: Path) -> None:
    (tmp_path / "res.json").write_text(json.dumps([{"question_id": 5, "answer": "Two"}]))
    (tmp_path / "ann.json").write_text(
        json.dumps({"annotations": [{"question_id": 5, "answers": ["2"] * 10}]})
    )
    args = ["eval", "vqa", "--predictions", str(tmp_path / "res.json"),
            f"data.annotations={tmp_path / 'ann.json'}", "--out", str(tmp_path / "v")]  # fmt: skip
    out = _invoke(*args)
    assert out.exit_code == 0 and "accuracy = 100.0000" in out.output
    assert json.loads((tmp_path / "v" / "results.json").read_text())["version"] == "2016"
    out = _invoke(*args, "vqa_version=current")
    assert out.exit_code == 0 and "accuracy = 0.0000" in out.output
    assert json.loads((tmp_path / "v" / "results.json").read_text())["version"] == "current"
    out = CliRunner().invoke(cli, [*args, "vqa_version=2017"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert "vqa_version" in out.output and "valid versions: '2016', 'current'" in out.output


def test_eval_without_a_model_or_predictions_is_a_clear_error(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["eval", "vqa", "data.annotations=a.json", "--out", str(tmp_path)])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert "model.export: required to generate from a checkpoint" in out.output
    assert "predictions" in out.output


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "img" / "x.png")
    out = CliRunner().invoke(
        cli, ["eval", "stats", str(tmp_path / "img"), "--out", str(tmp_path / "s.npz")]
    )
    assert (
        out.exit_code == 1 and "needs weights_path" in out.output and "Traceback" not in out.output
    )
    out = CliRunner().invoke(
        cli,
        [
            "eval",
            "fid",
            str(tmp_path / "img"),
            str(tmp_path / "img"),
            "--weights",
            str(tmp_path / "none.pth"),
        ],
    )
    assert out.exit_code == 1 and "none.pth: FID Inception weights not found" in out.output


def test_ablate_shipped_config_small_then_resume(tmp_path: Path) -> None:
    config = ROOT / "configs" / "ablations" / "fid_sample_bias.yaml"
    args = [
        "ablate",
        str(config),
        "matrix.dim=[4,8]",
        "matrix.num_samples=[20,40]",
        "--out",
        str(tmp_path / "abl"),
    ]
    out = _invoke(*args)
    assert out.exit_code == 0, out.output
    assert "4 runs (4 done)" in out.output
    assert (tmp_path / "abl" / "plot-bias-vs-num_samples-by-dim.png").is_file()
    again = _invoke(*args)
    assert "4 runs (4 skipped)" in again.output
