"""``cm3leon generate`` end to end: trainer export + registered tokenizers -> PNG grids, JSONL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cm3leon.core.cli import cli
from cm3leon.core.documents import image_to_png
from cm3leon.core.exported import save_exported
from cm3leon.core.io import is_complete
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.vocab import Vocabulary
from cm3leon.decoding.config import PromptFileError, read_prompts
from tests.decoding._helpers import colour_image, random_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """A tiny export over bytes + an untrained ``vqgan`` small_32 tokenizer (64 codes of 512)."""
    root = tmp_path_factory.mktemp("gen")
    image_tok = get_registries().tokenizers.build("vqgan", preset="small_32", seed=0)
    image_tok.save(root / "vq")
    vocab = Vocabulary(text_size=256, image_size=image_tok.codebook_size)
    save_exported(random_model(vocab, dtype=torch.float32, std=0.1), root / "export", vocab=vocab)
    (root / "red.png").write_bytes(image_to_png(colour_image((255, 0, 0), 32)))
    lines = [
        {"id": "cube", "text": "a red cube"},
        {"id": "cap", "task": "image_to_text", "image": "red.png", "prefix": "Image of ", "suffix": ":",
         "max_new_tokens": 5},
        {"id": "edit", "task": "edit", "image": "red.png", "text": "make it blue"},
        {"id": "vqa", "task": "vqa2", "record": {"question": "What colour?", "image": "red.png"},
         "output": "answer", "max_new_tokens": 3},
    ]  # fmt: skip
    (root / "prompts.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return {"root": root, "export": root / "export", "vq": root / "vq", "prompts": root / "prompts.jsonl"}


def _invoke(assets: dict[str, Path], out: Path, *extra: str):
    args = ["generate", "configs/generate/small.yaml", f"model.export={assets['export']}", "tokenizer.text=bytes",
            f"tokenizer.image=vqgan:{assets['vq']}", "batch_size=2", "--out", str(out), *extra]  # fmt: skip
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_generate_writes_grids_images_jsonl_and_manifest(assets, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _invoke(assets, out, "--prompts", str(assets["prompts"]), "--prompt", "a blue ball",
                     "--num-candidates", "2", "--seed", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["num_prompts"] == 5 and summary["num_images"] == 3 * 2
    assert is_complete(out) and "done in" in (out / "generate.log").read_text()
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["cube", "cap", "edit", "vqa", "prompt0"]
    for r in rows:
        assert len(r["candidates"]) == 2
        if r["output"] == "image":
            grid = Image.open(out / r["grid"])
            assert grid.size == (2 * 34 + 2, 34 + 2)  # 2 candidates of 32 px, 2 px padding
            for c in r["candidates"]:
                assert Image.open(out / c["image"]).size == (32, 32) and len(c["tokens"]) == 64
        else:
            assert all(isinstance(c["text"], str) for c in r["candidates"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert [p["id"] for p in manifest["prompts"]] == ["cube", "edit", "prompt0"]
    assert manifest["prompts"][0]["text"] == "a red cube" and len(manifest["prompts"][0]["images"]) == 2


def test_generate_is_deterministic_for_a_seed(assets, tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        result = _invoke(assets, tmp_path / name, "--prompt", "a red cube", "--num-candidates", "2", "--seed", seed)
        assert result.exit_code == 0, result.output
        runs[name] = (tmp_path / name / "grids" / "prompt0.png").read_bytes()
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["decoding.image.pipelines.0.guidance.name=cfgg"], "unknown decoding processor 'cfgg'"),
        (["decoding.image.pipelines.0.guidance.options.scale=high"], r"cfg\.scale must be a real number, got 'high'"),
        (["decoding.image.pipelines.0.guidance.options.scale=[3]"], r"cfg\.scale must be a real number, got \[3\]"),
        (["num_candidates=many"], "num_candidates"),
        (["retrieval.k=1", "retrieval.retriever.name=nope"], "unknown retriever 'nope'"),
        (["decoding.image.pipelines.0.weight=0"], "weight must be >= 1"),
    ],
)
def test_bad_settings_are_clear_errors(assets, tmp_path: Path, extra: list[str], message: str) -> None:
    result = _invoke(assets, tmp_path / "bad", *extra, "--prompt", "x")
    assert result.exit_code != 0 and re.search(message, result.output), result.output
    assert not (tmp_path / "bad").exists()


def test_existing_output_needs_overwrite_and_prompts_are_required(assets, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _invoke(assets, out, "--prompt", "x", "--num-candidates", "1").exit_code == 0
    result = _invoke(assets, out, "--prompt", "x")
    assert result.exit_code != 0 and "already exists" in result.output
    assert _invoke(assets, out, "--prompt", "y", "--num-candidates", "1", "--overwrite").exit_code == 0
    result = _invoke(assets, tmp_path / "none")
    assert result.exit_code != 0 and "no prompts" in result.output


def test_prompt_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    cases = [
        ('{"text": "ok"}\n{"text": \n', r"p\.jsonl:2: invalid JSON"),
        ('{"task": "image_to_text", "image": "missing.png"}\n', r"p\.jsonl:1: image file .*missing\.png.* not found"),
        ('{"task": "paint", "text": "x"}\n', r"unknown task 'paint'.*built-in prompt kinds: text_to_image"),
        ('{"task": "vqa2", "record": {"question": "q"}}\n', r"p\.jsonl:1: 'output' must be a non-empty string"),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', r"duplicate prompt id\(s\) \['a'\]"),
        ('{"text": ""}\n', r"p\.jsonl:1: 'text' must be a non-empty string"),
    ]
    for content, message in cases:
        path.write_text(content)
        with pytest.raises(PromptFileError, match=message):
            read_prompts(path)


def test_generate_runner_writes_a_manifest_eval_reads(assets, tmp_path: Path) -> None:
    from cm3leon.core.config import load_config
    from cm3leon.decoding.config import GenerateConfig

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "text": "a red cube"}\n{"id": "b", "text": "a blue ball"}\n')
    cfg = load_config(GenerateConfig, "configs/generate/small.yaml", [
        f"model.export={assets['export']}", "tokenizer.text=bytes", f"tokenizer.image=vqgan:{assets['vq']}",
        f"prompts={prompts}", "num_candidates=2", "output=ignored"])  # fmt: skip
    runner = get_registries().runners.get("generate").load()
    summary = runner(cfg, tmp_path / "run")
    assert summary["num_prompts"] == 2 and summary["num_images"] == 4 and summary["tokens_per_second"] > 0
    assert Path(summary["manifest"]) == tmp_path / "run" / "samples" / "manifest.json"
    assert not Path("ignored").exists()
    t2i = pytest.importorskip("cm3leon.eval.protocols.text_to_image")
    read = t2i.read_samples_manifest(summary["manifest"])
    assert [(p["id"], p["text"], len(p["images"])) for p in read] == [("a", "a red cube", 2), ("b", "a blue ball", 2)]
