"""``cm3leon tasks`` list / show / render / mixture on fixtures in the public formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.shards import iter_documents
from tests.tasks._helpers import write_image, write_json, write_jsonl


@pytest.fixture
def data(tmp_path: Path) -> Path:
    write_image(tmp_path / "ocr" / "a.png", (200, 0, 0))
    write_image(tmp_path / "ocr" / "b.png", (0, 200, 0))
    write_jsonl(tmp_path / "ocr" / "ocr.jsonl", [{"image": "a.png", "text": "OPEN"}, {"image": "b.png", "text": "EXIT"}])
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 16, "height": 12} for i in (1, 2, 3)]
    for i in (1, 2, 3):
        write_image(tmp_path / "coco" / "train2017" / f"{i:012d}.jpg", (i * 50, 0, 0), fmt="PNG")
    write_json(tmp_path / "coco" / "annotations" / "captions_train2017.json", {"images": images, "annotations": [
        {"id": 10 + k, "image_id": 1 + k % 3, "caption": f"caption {k}"} for k in range(9)]})  # fmt: skip
    return tmp_path


def test_list_and_show() -> None:
    result = CliRunner().invoke(cli, ["tasks", "list"])
    assert result.exit_code == 0, result.output
    for name in ("vqa2", "scribble_to_image", "instructpix2pix", "object_detection"):
        assert name in result.output
    rows = json.loads(CliRunner().invoke(cli, ["tasks", "list", "--json"]).output)
    assert {"name": "ocr", "inputs": ["text"], "outputs": ["image"]}.items() <= next(
        r for r in rows if r["name"] == "ocr").items()
    shown = CliRunner().invoke(cli, ["tasks", "show", "vqa2"])
    assert "template 2: Question: {question} The answer is {answer}. <break> {image}" in shown.output
    bad = CliRunner().invoke(cli, ["tasks", "show", "nope"])
    assert bad.exit_code != 0 and "unknown task 'nope'" in bad.output


def test_render(data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tasks", "render", "ocr", str(data / "ocr"), "--count", "2",
                                      "--images-to", str(tmp_path / "png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert 'draw "OPEN" <break> [image 16x12:' in result.output and 'draw "EXIT"' in result.output
    assert len(list((tmp_path / "png").glob("*.png"))) == 2
    result = CliRunner().invoke(cli, ["tasks", "render", "coco_captioning", str(data / "coco"), "--index", "4",
                                      "-o", "split=train2017"])  # fmt: skip
    assert result.exit_code == 0 and "caption 4" in result.output
    bad = CliRunner().invoke(cli, ["tasks", "render", "ocr", str(data / "coco")])
    assert bad.exit_code != 0 and "no ocr.jsonl" in bad.output


def test_mixture_command(data: Path, tmp_path: Path) -> None:
    config = tmp_path / "mix.yaml"
    config.write_text(
        "# cm3leon tasks mixture mix.yaml\n"
        "name: cli\nseed: 3\n"
        f"tasks:\n  - task: ocr\n    weight: 4.0\n    sources: [{{path: {data / 'ocr'}}}]\n"
        f"  - task: coco_captioning\n    sources: [{{path: {data / 'coco'}}}]\n"
        "output: {path: PLACEHOLDER}\n"
    )
    out = tmp_path / "out" / "mix"
    result = CliRunner().invoke(cli, ["tasks", "mixture", str(config), f"output.path={out}"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # N = 11, shares 0.8 / 0.2: ocr would need 4.4 passes -> 3x (6 docs); coco 0.24x -> 0.3x (3 docs).
    assert report["count"] == {"ocr": 6, "coco_captioning": 3}
    assert report["factor"] == {"ocr": 3.0, "coco_captioning": 0.3}
    assert len(list(iter_documents(out))) == 9 and report["written"] == 9
    # The manifest and the log record the count the command prints (they said 0).
    from cm3leon.core.shards import verify_dataset

    assert verify_dataset(out).meta["mixture"] == report
    logged = [line for line in (tmp_path / "out" / "mix.mixture.log").read_text().splitlines() if "mixture cli: " in line]
    assert len(logged) == 1 and json.loads(logged[0].split("mixture cli: ", 1)[1]) == report
    bad = CliRunner().invoke(cli, ["tasks", "mixture", str(config), "output.paht=x"])
    assert bad.exit_code != 0 and "output.paht" in bad.output
