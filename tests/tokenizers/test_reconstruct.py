"""`cm3leon tokenizers reconstruct`: images -> codes -> images, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from cm3leon.tokenizers import VQGANTokenizer
from cm3leon.tokenizers.cli import tokenizers_command


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    tok = VQGANTokenizer.from_preset("small_32", seed=0)
    tok.save(tmp_path / "tok")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / f"{i:012d}.png")
    (images / "000000000000.txt").write_text("not an image")
    return tmp_path / "tok", images


def test_reconstruct_writes_decoded_images_and_psnr(tmp_path: Path) -> None:
    tok_dir, images = _setup(tmp_path)
    out = tmp_path / "rec"
    res = CliRunner().invoke(tokenizers_command, ["reconstruct", str(images), "--tokenizer", str(tok_dir),
                                                  "--out", str(out), "--limit", "3", "--batch-size", "2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"{i:012d}.png" for i in range(3)]  # first N by name, same stems
    assert (out / "COMPLETE").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["tokens_per_image"] == 64 and summary["codebook_size"] == 512
    # The decoded images are exactly what the tokenizer decodes for those codes, batched as
    # the command batches them (--batch-size 2: images 0 and 1 together).  A batch of one
    # can differ by one grey level: CPU kernels round differently per batch shape.
    tok = VQGANTokenizer.load(tok_dir)
    expected = tok.decode(tok.encode([str(images / f"{i:012d}.png") for i in (0, 1)]))[1]
    assert np.array_equal(np.asarray(expected), np.asarray(Image.open(out / "000000000001.png")))
    psnr = []
    for i in range(3):
        ref = np.asarray(Image.open(images / f"{i:012d}.png"), dtype=np.float64)
        got = np.asarray(Image.open(out / f"{i:012d}.png"), dtype=np.float64)
        psnr.append(10 * np.log10(255.0**2 / np.mean((ref - got) ** 2)))
    assert abs(summary["psnr"] - np.mean(psnr)) < 1e-6
    assert abs(json.loads(res.output)["psnr"] - summary["psnr"]) < 1e-3


def test_reconstruct_errors(tmp_path: Path) -> None:
    tok_dir, images = _setup(tmp_path)
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(tokenizers_command, ["reconstruct", str(empty), "--tokenizer", str(tok_dir), "--out",
                                             str(tmp_path / "o1")])  # fmt: skip
    assert res.exit_code != 0 and "no image files" in res.output
    res = runner.invoke(tokenizers_command, ["reconstruct", str(images), "--tokenizer", str(tmp_path / "nope"),
                                             "--out", str(tmp_path / "o2")])  # fmt: skip
    assert res.exit_code != 0 and "--tokenizer" in res.output and not (tmp_path / "o2").exists()
    out = tmp_path / "o3"
    assert runner.invoke(tokenizers_command, ["reconstruct", str(images), "--tokenizer", str(tok_dir),
                                              "--out", str(out)]).exit_code == 0  # fmt: skip
    res = runner.invoke(tokenizers_command, ["reconstruct", str(images), "--tokenizer", str(tok_dir),
                                             "--out", str(out)])  # fmt: skip
    assert res.exit_code != 0 and "already exists" in res.output
