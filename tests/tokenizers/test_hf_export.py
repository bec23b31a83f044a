"""``cm3leon export hf``: a folder that transformers loads with no cm3leon code.

A tiny model, BPE and VQ tokenizer are built here; the folder is written through the CLI
(so the command's registration is exercised too) and loaded with ``AutoModelForCausalLM``
and ``AutoTokenizer`` only -- in-process for the detailed checks, and in a subprocess
that cannot import cm3leon for the "no cm3leon code" claim.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("transformers")

from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.documents import Document, ImageSegment
from cm3leon.core.exported import save_exported
from cm3leon.core.model import cm3leon_tiny
from cm3leon.core.serialize import DocumentTokenizer
from cm3leon.core.testing import CommandConformance
from cm3leon.core.vocab import Vocabulary
from cm3leon.tokenizers.hf_export import IMAGE_TOKEN, unified_tokenizer
from cm3leon.tokenizers.image_tokenizer import VQGANTokenizer, load_image_tokenizer
from cm3leon.tokenizers.text_bpe import BPETokenizer
from tests.tokenizers.conftest import shapes_image

CORPUS = ["a red cube on a grey wall", "two blue discs", "a small green square above a yellow disc",
          "Ünïcode ☃ and  double  spaces\n", "three purple cubes"] * 8  # fmt: skip
CAPTION = "a red cube next to two blue discs ☃"
NEW_TOKENS = 6

#: Loads OUT with AutoModelForCausalLM/AutoTokenizer in a process where importing cm3leon
#: fails (a meta-path blocker, and every sys.path entry holding a cm3leon package dropped).
LOADER = r"""
import json, os, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cm3leon" or name.startswith("cm3leon."):
            raise ImportError(f"cm3leon is blocked in this process: {name}")
sys.meta_path.insert(0, _Block())
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "cm3leon"))]
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
out, text, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float64).eval()
tok = AutoTokenizer.from_pretrained(out)
enc = tok(text, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits[0]
    gen = model.generate(**enc, max_new_tokens=n, do_sample=False)
print(json.dumps({
    "model": f"{type(model).__module__}.{type(model).__name__}",
    "tokenizer": f"{type(tok).__module__}.{type(tok).__name__}",
    "ids": enc.input_ids[0].tolist(), "logits": logits.tolist(),
    "generated": gen[0, enc.input_ids.shape[1]:].tolist(),
    "cm3leon_modules": sorted(m for m in sys.modules if m.startswith("cm3leon")),
}))
"""


class TestExportCommandConformance(CommandConformance):
    name = "export"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tokenizers, a random tiny model, its cm3leon export and the HF folder written by the CLI."""
    root = tmp_path_factory.mktemp("hf_export")
    bpe = BPETokenizer.train(CORPUS, vocab_size=320, min_frequency=1, show_progress=False)
    bpe.save(root / "text")
    vq = VQGANTokenizer.from_preset("small_32", seed=0, codebook_size=128)
    vq.save(root / "image")
    vocab = Vocabulary(text_size=bpe.vocab_size, image_size=vq.codebook_size)
    torch.manual_seed(0)
    model = cm3leon_tiny(vocab_size=vocab.size, max_seq_len=128)
    with torch.no_grad():  # §2.3's zero-init output projections would make the blocks vacuous
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    model.eval()
    save_exported(model, root / "export", vocab=vocab, meta={"run_name": "tiny_run", "tokens": 1234, "batch": 5})
    summary = {"evaluations": {"vqa": {"task": "vqa2", "metrics": {"accuracy": 41.5},
                                       "baselines": {"majority": {"accuracy": 12.5}}}},
               "floors": [{"name": "VQA accuracy (%)", "value": 41.5, "baseline": 12.5, "passed": True}]}  # fmt: skip
    (root / "summary.json").write_text(json.dumps(summary))
    out = root / "hf"
    result = CliRunner().invoke(cli, ["export", "hf", str(root / "export"), str(out),
                                      "--text-tokenizer", str(root / "text"),
                                      "--image-tokenizer", f"vqgan:{root / 'image'}",
                                      "--summary", str(root / "summary.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    codes = vq.encode([shapes_image(np.random.default_rng(3))])[0]  # (64,) VQ codes of a real image
    doc = Document.of(CAPTION, ImageSegment(codes=tuple(int(c) for c in codes)), "two of them")
    return {"root": root, "out": out, "bpe": bpe, "vq": vq, "vocab": vocab, "model": model,
            "doc": doc, "doc_tok": DocumentTokenizer(vocab, bpe, vq)}  # fmt: skip


def test_folder_layout_and_configs(built: dict) -> None:
    out, vocab = built["out"], built["vocab"]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "README.md", "vq"} <= names  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["architectures"], config["vocab_size"]) == ("opt", ["OPTForCausalLM"], vocab.size)
    assert config["cm3leon"]["vocab"] == vocab.to_dict() and config["cm3leon"]["tokens_per_image"] == 64
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (vocab.eos_id, vocab.eos_id, vocab.pad_id)
    vq = load_image_tokenizer(out / "vq")  # the VQ tokenizer beside it: safetensors + config, hash-checked
    assert all(torch.equal(a, b) for a, b in zip(vq.model.state_dict().values(),
                                                 built["vq"].model.state_dict().values(), strict=True))  # fmt: skip


def test_model_card_metadata(built: dict) -> None:
    text = (built["out"] / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "transformers"
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == "visual-question-answering"
    assert {m["name"]: m["value"] for m in result["metrics"]} == {"accuracy": 41.5, "baseline.majority.accuracy": 12.5}
    card = meta["cm3leon"]
    assert card["architecture"]["n_layers"] == 2 and card["vocabulary"]["vocab"] == built["vocab"].to_dict()
    assert card["data"] == {"tokens_seen": 1234, "batches": 5}
    assert card["evaluation"]["floors"][0]["passed"] is True
    assert "| vqa | vqa2 | accuracy 41.5 |" in text


def test_tokenizer_ids_are_cm3leons_vocabulary(built: dict) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(built["out"])
    vocab, bpe = built["vocab"], built["bpe"]
    assert type(tok) is PreTrainedTokenizerFast and len(tok) == vocab.size
    names = tok.convert_ids_to_tokens(list(range(vocab.size)))
    assert names[: vocab.num_special] == vocab.special_tokens()
    assert names[vocab.text_offset : vocab.image_offset] == [bpe.id_to_token(t) for t in range(vocab.text_size)]
    assert names[vocab.image_offset :] == [IMAGE_TOKEN.format(c) for c in range(vocab.image_size)]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (1, 1, 0, 3)
    assert tok.convert_tokens_to_ids(["<break>", "<mask:3>", "<infill:7>"]) == [
        vocab.break_id, vocab.mask_id(3), vocab.infill_id(7)]  # fmt: skip


def test_tokenizer_round_trips_a_caption_image_document(built: dict) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built["out"])
    doc_tok, doc = built["doc_tok"], built["doc"]
    ids = doc_tok.encode(doc).tolist()  # caption <break> c_1..c_64 <break> text
    # The document written by hand as a string: the text, then each VQ code by name.
    written = CAPTION + "<break>" + "".join(IMAGE_TOKEN.format(c) for c in doc.segments[1].codes) + "<break>two of them"
    assert tok(written, add_special_tokens=False).input_ids == ids
    text = tok.decode(ids)
    assert text == written
    assert tok(text, add_special_tokens=False).input_ids == ids
    assert tok(text).input_ids == doc_tok.encode_example(doc).tolist()  # <eos> first, as in training
    codes = [i - built["vocab"].image_offset for i in ids if built["vocab"].is_image(i)]
    assert codes == list(doc.segments[1].codes)
    assert tok.decode(ids, skip_special_tokens=True).startswith(CAPTION + "<img_")


def test_logits_equal_cm3leons(built: dict) -> None:
    """Same weights, same function: float64 agrees to rounding (1e-12), float32 as loaded to 1e-5."""
    from transformers import AutoModelForCausalLM

    ids = torch.as_tensor(built["doc_tok"].encode_example(built["doc"]))[None]  # (1, L)
    model = built["model"]
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        hf = AutoModelForCausalLM.from_pretrained(built["out"], dtype=dtype).eval()
        with torch.no_grad():
            ours, theirs = model.to(dtype)(ids), hf(ids).logits  # (1, L, V)
        assert ours.abs().max() > 1.0  # not a vacuous comparison of near-zero logits
        torch.testing.assert_close(theirs, ours, rtol=0, atol=atol)
    model.float()


def _greedy(model: torch.nn.Module, ids: torch.Tensor, n: int, eos: int) -> list[int]:
    new: list[int] = []
    for _ in range(n):
        with torch.no_grad():
            token = int(model(ids)[0, -1].argmax())
        new.append(token)
        if token == eos:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return new


class _BlockCm3leon:
    """A meta-path finder under which ``import cm3leon...`` fails (and says so)."""

    attempts: list[str]

    def __init__(self) -> None:
        self.attempts = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "cm3leon" or name.startswith("cm3leon."):
            self.attempts.append(name)
            raise ImportError(f"cm3leon is blocked while loading the export: {name}")


def _check_loader_output(built: dict, got: dict, prompt_ids: np.ndarray) -> None:
    """What :data:`LOADER` (or the in-process load) saw matches cm3leon: ids, logits, greedy tokens."""
    assert got["cm3leon_modules"] == []
    assert got["model"] == "transformers.models.opt.modeling_opt.OPTForCausalLM"
    assert got["tokenizer"] == "transformers.tokenization_utils_fast.PreTrainedTokenizerFast"
    assert got["ids"] == prompt_ids.tolist()
    model = built["model"].double()
    ids = torch.as_tensor(prompt_ids)[None]
    with torch.no_grad():
        ours = model(ids)[0]  # (L, V)
    theirs = torch.tensor(got["logits"], dtype=torch.float64)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-12)
    assert got["generated"] == _greedy(model, ids, NEW_TOKENS, built["vocab"].eos_id)
    model.float()


def _prompt(built: dict) -> tuple[str, np.ndarray]:
    """A prompt cut inside the document's last text, as a string and as cm3leon's ids."""
    from transformers import AutoTokenizer

    prompt_ids = built["doc_tok"].encode_example(built["doc"])[:-2]
    return AutoTokenizer.from_pretrained(built["out"]).decode(prompt_ids[1:]), prompt_ids


def test_loads_and_generates_without_cm3leon(built: dict) -> None:
    """Loading and generating import no cm3leon code: every cm3leon module is hidden from
    ``sys.modules`` and importing one fails while :data:`LOADER` runs (in this process, for speed;
    the slow tests run it in separate processes, one of them a fresh virtualenv)."""
    prompt, prompt_ids = _prompt(built)
    hidden = {name: sys.modules.pop(name) for name in list(sys.modules) if name.startswith("cm3leon")}
    argv, stdout, path, meta_path = sys.argv, sys.stdout, sys.path[:], sys.meta_path[:]
    blocker = _BlockCm3leon()
    sys.meta_path.insert(0, blocker)
    try:
        import io

        sys.argv, sys.stdout = ["loader", str(built["out"]), prompt, str(NEW_TOKENS)], io.StringIO()
        exec(compile(LOADER, "<loader>", "exec"), {"__name__": "__loader__"})
        printed = sys.stdout.getvalue()
    finally:
        sys.argv, sys.stdout, sys.path[:], sys.meta_path[:] = argv, stdout, path, meta_path  # LOADER edits both
        sys.modules.update(hidden)
    assert blocker.attempts == [] and blocker not in sys.meta_path
    _check_loader_output(built, json.loads(printed.strip().splitlines()[-1]), prompt_ids)


def _run_loader(python: str, built: dict) -> tuple[dict, np.ndarray]:
    prompt, prompt_ids = _prompt(built)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([python, "-I", "-c", LOADER, str(built["out"]), prompt, str(NEW_TOKENS)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), prompt_ids


@pytest.mark.slow
def test_loads_in_a_process_that_cannot_import_cm3leon(built: dict) -> None:
    got, prompt_ids = _run_loader(sys.executable, built)
    _check_loader_output(built, got, prompt_ids)


@pytest.mark.slow
def test_loads_in_a_fresh_virtualenv_with_only_transformers_and_torch(built: dict, tmp_path: Path) -> None:
    """``uv venv`` + ``uv pip install --offline transformers torch==<ours> safetensors`` (from the uv
    cache), then :data:`LOADER` with that interpreter: no cm3leon distribution is installed there."""
    import shutil

    import transformers

    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", str(venv), "--python", sys.executable], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    torch_version = torch.__version__.split("+")[0]
    install = subprocess.run([uv, "pip", "install", "--offline", "-q", "--python", python,
                              f"transformers=={transformers.__version__}", f"torch=={torch_version}", "safetensors"],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    if install.returncode != 0:
        pytest.skip(f"offline install from the uv cache failed: {install.stderr[-500:]}")
    listed = subprocess.run([uv, "pip", "list", "--python", python], capture_output=True, text=True, check=True)
    assert "cm3leon" not in listed.stdout and "transformers" in listed.stdout
    got, prompt_ids = _run_loader(python, built)
    _check_loader_output(built, got, prompt_ids)


def test_unified_tokenizer_refuses_mismatches(built: dict) -> None:
    vocab = built["vocab"]
    with pytest.raises(ValueError, match="text tokenizer has 320 tokens, the model's vocabulary 321"):
        unified_tokenizer(built["bpe"], Vocabulary(text_size=321, image_size=vocab.image_size))
    result = CliRunner().invoke(cli, ["export", "hf", str(built["root"] / "export"), str(built["root"] / "bad"),
                                      "--text-tokenizer", "bytes", "--image-tokenizer", f"vqgan:{built['root'] / 'image'}"])  # fmt: skip
    assert result.exit_code != 0
    assert "text tokenizer has 256 ids, the model 320" in result.output
    assert not (built["root"] / "bad").exists()


def test_from_a_training_checkpoint_with_its_run_config_and_data(built: dict, tmp_path: Path) -> None:
    """A Composer-layout checkpoint (RUN/checkpoints/*.pt) exports too; the card's data and
    training sections come from RUN/config.yaml and the shard manifest of its stream."""
    pytest.importorskip("composer")
    from cm3leon.core.train.composer_checkpoints import RUN_INFO_KEY

    model, vocab = built["model"], built["vocab"]
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (tmp_path / "shards").mkdir()
    manifest = {"num_samples": 620, "kind": "tokens", "stats": {"tokens": 53836, "image_tokens": 39680},
                "meta": {"retriever": "clip", "k": 2}}  # fmt: skip
    (tmp_path / "shards" / "manifest.json").write_text(json.dumps(manifest))
    config = {"run_name": "ckpt_run", "seed": 17, "model": {"name": "cm3leon_tiny"}, "max_duration": "8ba",
              "data": {"streams": {"pairs": {"local": str(tmp_path / "shards")}}, "seq_len": 128}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    info = {"transformer": model.config.to_dict(), "vocab": vocab.to_dict(), "run_name": "ckpt_run"}
    state = {"model": {f"model.{k}": v for k, v in model.float().state_dict().items()},
             "callbacks": {RUN_INFO_KEY: info}, "timestamp": {"Timestamp": {"batch": 8, "token": 999}}}  # fmt: skip
    torch.save({"state": state}, run / "checkpoints" / "ep0-ba8-rank0.pt")
    out = tmp_path / "hf"
    result = CliRunner().invoke(cli, ["export", "hf", str(run / "checkpoints" / "ep0-ba8-rank0.pt"), str(out),
                                      "--text-tokenizer", f"bpe:{built['root'] / 'text'}",
                                      "--image-tokenizer", str(built["root"] / "image")])  # fmt: skip
    assert result.exit_code == 0, result.output
    card = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert "model-index" not in card  # no --summary
    data, training = card["cm3leon"]["data"], card["cm3leon"]["training"]
    assert (data["tokens_seen"], data["batches"], data["seq_len"]) == (999, 8, 128)
    assert data["streams"]["pairs"]["examples"] == 620 and data["streams"]["pairs"]["stats"]["tokens"] == 53836
    assert (training["run_name"], training["seed"], training["config"]) == ("ckpt_run", 17, str(run / "config.yaml"))
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.as_tensor(built["doc_tok"].encode_example(built["doc"]))[None]
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=0, atol=1e-5)
