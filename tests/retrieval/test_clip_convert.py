"""open_clip weights in every form users have: load_encoder and ``convert-encoder``.

Fixtures are written by the real libraries: open_clip builds a standard-layout CLIP at
random, ``torch.save`` / ``safetensors`` write the state dicts, and OpenAI's TorchScript
archive is reproduced the way OpenAI made it (``torch.jit.trace_module`` of a CLIP whose
weights were converted to float16, with ``input_resolution`` / ``context_length`` /
``vocab_size`` stored as tensors and the attention mask as a traced constant), so
open_clip's own ``load_openai_model`` reads it.

The fast tests use ``test-ViT-mini-32[-quickgelu]``: ViT-B-32's config (same module
layout and key names: patch-32 ViT, 77-token text transformer, 49408 BPE vocabulary)
at width 128 and depth 2.  ``-m slow`` repeats every form at the real ViT-B-32 size.

Tolerance: a converted encoder holds bit-identical float32 weights (checked with
``torch.equal``) and runs the same open_clip modules on the same device, so embeddings
can differ only by float reassociation between two module instances; unit vectors are
compared at ``atol=1e-6`` (a few float32 ulps summed over 64-512 dimensions).  The
QuickGELU test shows that a real difference is orders of magnitude above that.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.retrieval import convert
from cm3leon.retrieval.encoder import (
    ClipDocumentEncoder,
    EncoderError,
    build_clip_model,
    load_encoder,
    model_config,
)

MINI = "test-ViT-mini-32"
MINI_OVERRIDES = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 2, "width": 128},
                  "text_cfg": {"width": 128, "heads": 2, "layers": 2}}
TEXTS = ["a red circle on the left", "two green squares", "x"]
ATOL = 1e-6  # see the module docstring
OPENAI_VIT_B_32_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"  # from OpenAI's URL


def register_mini(directory: Path) -> None:
    """Register ViT-B-32's layout at a small size as open_clip architectures (GELU and QuickGELU)."""
    import open_clip

    cfg = model_config("ViT-B-32", MINI_OVERRIDES)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{MINI}.json").write_text(json.dumps(cfg))
    (directory / f"{MINI}-quickgelu.json").write_text(json.dumps({**cfg, "quick_gelu": True}))
    open_clip.add_model_config(directory)


def random_model(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_clip_model(model_config(arch)).eval()


def save_openai_torchscript(arch: str, seed: int, path: Path) -> torch.nn.Module:
    """Write a random ``arch`` in OpenAI's archive format; returns the float32 model it encodes.

    OpenAI traced ``forward``/``encode_image``/``encode_text`` of a CLIP whose Linear/Conv/
    attention weights and projections are float16, with three int attributes as tensors.
    """
    from open_clip.model import convert_weights_to_lp

    model = random_model(arch, seed)
    convert_weights_to_lp(model, torch.float16)
    reference = random_model(arch, seed + 1)
    reference.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    mask = model.attn_mask
    del model._buffers["attn_mask"]
    model.attn_mask = mask  # a plain attribute, so tracing bakes it in (as in OpenAI's model)
    size = model.visual.image_size[0]
    del model.context_length, model.vocab_size
    for key, value in (("input_resolution", size), ("context_length", 77), ("vocab_size", 49408)):
        model.register_buffer(key, torch.tensor(value))
    image, text = torch.ones(1, 3, size, size, dtype=torch.float16), torch.zeros(1, 77, dtype=torch.long)
    traced = torch.jit.trace_module(
        model, {"forward": (image, text), "encode_image": (image,), "encode_text": (text,)}, check_trace=False
    )
    torch.jit.save(traced, str(path))
    return reference


def assert_same_encoder(enc: ClipDocumentEncoder, source: torch.nn.Module) -> None:
    """Bit-identical weights, and the same text and image embeddings as ``source``."""
    ours = enc.model.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(ours[key], value.float()), key
    ref_text = F.normalize(source.encode_text(enc.tokenize(TEXTS)), dim=-1)
    torch.testing.assert_close(enc.encode_text(TEXTS), ref_text, atol=ATOL, rtol=0)
    torch.manual_seed(5)
    images = torch.rand(2, 3, 48, 40)  # (B, 3, H, W) in [0, 1]; resized and cropped by the transform
    ref_image = F.normalize(source.encode_image(torch.stack([enc.transform(x) for x in images])), dim=-1)
    torch.testing.assert_close(enc(images), ref_image, atol=ATOL, rtol=0)


@pytest.fixture(scope="module", autouse=True)
def _mini_arch(tmp_path_factory: pytest.TempPathFactory) -> None:
    register_mini(tmp_path_factory.mktemp("configs"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The source model and its safetensors / .bin / HF-folder / TorchScript forms."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("weights")
    source = random_model(MINI, seed=0)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(root / "open_clip_model.safetensors"))
    torch.save(state, root / "open_clip_pytorch_model.bin")
    hub = root / "hub"  # the layout of a Hugging Face hub open_clip repository
    hub.mkdir()
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear",
                  "resize_mode": "squash"}
    (hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_config(MINI),
                                                           "preprocess_cfg": preprocess}))
    torch.save(state, hub / "open_clip_pytorch_model.bin")
    archive = root / "ViT-mini-32.pt"
    openai_ref = save_openai_torchscript(f"{MINI}-quickgelu", 1, archive)
    return {"source": source, "safetensors": root / "open_clip_model.safetensors",
            "bin": root / "open_clip_pytorch_model.bin", "hub": hub, "preprocess": preprocess,
            "archive": archive, "openai_ref": openai_ref,
            "archive_sha": hashlib.sha256(archive.read_bytes()).hexdigest()}


@pytest.fixture
def trusted_archive(files: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The test archive's hash on the allowlist (test-only injection), as OpenAI's would be."""
    monkeypatch.setitem(convert.TEST_ONLY_TRUSTED_TORCHSCRIPT, files["archive_sha"], f"{MINI}-quickgelu")
    yield files["archive"]


def test_allowlist_is_openai_files_from_open_clip_registry() -> None:
    import open_clip

    allow = convert.official_openai_archives()
    assert allow[OPENAI_VIT_B_32_SHA256] == "ViT-B-32-quickgelu"
    assert len(allow) == 9 and all(len(sha) == 64 for sha in allow)  # RN50 ... ViT-L-14-336
    assert set(allow.values()) <= set(open_clip.list_models())
    assert all(arch.endswith("-quickgelu") for arch in allow.values())
    assert convert.TEST_ONLY_TRUSTED_TORCHSCRIPT == {}  # nothing extra outside a test's monkeypatch
    assert convert.trusted_torchscript_archives() == allow


@pytest.mark.parametrize("form", ["safetensors", "bin"])
def test_load_encoder_reads_standard_state_dicts(files: dict[str, Any], form: str) -> None:
    enc = load_encoder(model=MINI, pretrained=files[form])
    assert_same_encoder(enc, files["source"])
    assert enc.image_size == 64 and enc.preprocess_cfg.mean == (0.48145466, 0.4578275, 0.40821073)


def test_training_checkpoint_wrapping_is_accepted(files: dict[str, Any], tmp_path: Path) -> None:
    """``{"state_dict": {"module.<key>": ...}}`` (DDP training checkpoints) as open_clip accepts it."""
    wrapped = tmp_path / "epoch_3.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in files["source"].state_dict().items()}}, wrapped)
    assert_same_encoder(load_encoder(model=MINI, pretrained=wrapped), files["source"])


def test_pickled_code_in_a_bin_is_refused(files: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return os.mkdir, (str(marker),)

    evil = tmp_path / "pytorch_model.bin"
    torch.save({"visual.proj": torch.zeros(1), "x": Payload()}, evil)
    with pytest.raises(EncoderError, match=r"pytorch_model.bin: refused by torch.load\(weights_only=True\)"):
        load_encoder(model=MINI, pretrained=evil)
    with pytest.raises(EncoderError, match="refused by torch.load"):
        convert.convert_encoder(evil, tmp_path / "out", model=MINI)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_unlisted_torchscript_is_refused_before_it_is_deserialised(
    files: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.jit.load reached for an archive that is not allowlisted")

    monkeypatch.setattr(torch.jit, "load", boom)
    assert convert.is_torchscript_archive(files["archive"])
    message = rf"ViT-mini-32.pt: TorchScript archive with SHA-256 {files['archive_sha']} is not one of OpenAI's"
    with pytest.raises(EncoderError, match=message):
        load_encoder(model=f"{MINI}-quickgelu", pretrained=files["archive"])
    result = CliRunner().invoke(cli, ["retrieval", "convert-encoder", str(files["archive"]), str(tmp_path / "out")])
    assert result.exit_code == 1 and "is not one of OpenAI's published CLIP files" in result.output
    assert not (tmp_path / "out").exists()


def test_allowlisted_archive_loads_as_its_quickgelu_architecture(files: dict[str, Any], trusted_archive: Path) -> None:
    import open_clip

    enc = load_encoder(model=f"{MINI}-quickgelu", pretrained=trusted_archive)
    assert_same_encoder(enc, files["openai_ref"])
    # open_clip's own reader of OpenAI archives agrees (an independent reference).
    theirs = open_clip.load_openai_model(str(trusted_archive), device="cpu", precision="fp32")
    assert_same_encoder(enc, theirs)
    with pytest.raises(EncoderError, match=rf"load it as '{MINI}-quickgelu', not '{MINI}'\. OpenAI trained with"):
        load_encoder(model=MINI, pretrained=trusted_archive)
    # Why it matters: the same weights in the GELU architecture embed differently, far above ATOL.
    gelu = build_clip_model(model_config(MINI)).eval()
    gelu.load_state_dict(enc.model.state_dict())
    wrong = F.normalize(gelu.encode_text(enc.tokenize(TEXTS)), dim=-1)
    assert (wrong - enc.encode_text(TEXTS)).abs().max() > 1e-3


def _convert(src: Path, out: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["retrieval", "convert-encoder", str(src), str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("form", ["safetensors", "bin", "hub", "torchscript"])
def test_convert_encoder_each_form(files: dict[str, Any], form: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if form == "torchscript":
        monkeypatch.setitem(convert.TEST_ONLY_TRUSTED_TORCHSCRIPT, files["archive_sha"], f"{MINI}-quickgelu")
    src, args = {"safetensors": (files["safetensors"], ["--model", MINI]), "bin": (files["bin"], ["--model", MINI]),
                 "hub": (files["hub"], []), "torchscript": (files["archive"], [])}[form]
    report = _convert(src, tmp_path / "enc", *args)
    enc = load_encoder(tmp_path / "enc")  # what a bank does with its encoder directory
    assert report["encoder"] == str(tmp_path / "enc") and report["fingerprint"] == enc.fingerprint
    assert_same_encoder(enc, files["openai_ref"] if form == "torchscript" else files["source"])
    written = json.loads((tmp_path / "enc" / "open_clip_config.json").read_text())
    assert written["cm3leon"]["converted_from"]["weights_sha256"] == report["source_sha256"]
    assert written["model_cfg"].get("quick_gelu", False) is (form == "torchscript")
    expected_form = {"bin": "state-dict", "hub": "open_clip-dir", "torchscript": "openai-torchscript"}
    assert report["form"] == expected_form.get(form, form)
    if form == "hub":  # the folder's own preprocessing travels with it
        assert list(enc.preprocess_cfg.mean) == files["preprocess"]["mean"]
        assert enc.preprocess_cfg.resize_mode == "squash"


def test_convert_encoder_errors(files: dict[str, Any], tmp_path: Path, trusted_archive: Path) -> None:
    def fails(*args: str) -> str:
        result = CliRunner().invoke(cli, ["retrieval", "convert-encoder", *args])
        assert result.exit_code != 0
        return result.output

    assert "does not say its architecture: give the open_clip name" in fails(str(files["bin"]), str(tmp_path / "a"))
    assert "not 'ViT-B-32'" in fails(str(trusted_archive), str(tmp_path / "b"), "--model", "ViT-B-32")
    assert "drop --model" in fails(str(files["hub"]), str(tmp_path / "c"), "--model", MINI)
    assert "cannot load as open_clip 'ViT-B-32'" in fails(str(files["safetensors"]), str(tmp_path / "d"),
                                                          "--model", "ViT-B-32")
    _convert(files["safetensors"], tmp_path / "e", "--model", MINI)
    assert "exists" in fails(str(files["safetensors"]), str(tmp_path / "e"), "--model", MINI)
    _convert(files["bin"], tmp_path / "e", "--model", MINI, "--overwrite")
    assert not any(p.name.startswith(("a", "b", "c", "d")) for p in tmp_path.iterdir())


def test_damaged_files_are_errors_naming_the_file(files: dict[str, Any], tmp_path: Path) -> None:
    cut = tmp_path / "cut.bin"
    cut.write_bytes(files["bin"].read_bytes()[:5000])
    with pytest.raises(EncoderError, match=r"cut.bin: refused by torch.load\(weights_only=True\)"):
        load_encoder(model=MINI, pretrained=cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(EncoderError, match="junk.safetensors: not a readable safetensors file"):
        load_encoder(model=MINI, pretrained=junk)
    tensors = tmp_path / "list.bin"
    torch.save([torch.zeros(1)], tensors)
    with pytest.raises(EncoderError, match="list.bin: expected a state dict of tensors, got list"):
        load_encoder(model=MINI, pretrained=tensors)
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_config(MINI)}))
    with pytest.raises(EncoderError, match="hub: no weights file"):
        convert.convert_encoder(tmp_path / "hub", tmp_path / "out")


@pytest.mark.slow
def test_real_size_vit_b_32_in_every_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ViT-B-32 itself (151 M parameters, ~600 MB per file): ~3 min on 2 shared CPU cores."""
    from safetensors.torch import save_file

    source = random_model("ViT-B-32", seed=0)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "open_clip_model.safetensors"))
    for form, name in (("safetensors", "open_clip_model.safetensors"), ("bin", "open_clip_pytorch_model.bin")):
        if form == "bin":
            torch.save(state, tmp_path / name)
        assert_same_encoder(load_encoder(model="ViT-B-32", pretrained=tmp_path / name), source)
        _convert(tmp_path / name, tmp_path / f"enc-{form}", "--model", "ViT-B-32")
        assert_same_encoder(load_encoder(tmp_path / f"enc-{form}"), source)
        (tmp_path / name).unlink()
    archive = tmp_path / "ViT-B-32.pt"
    reference = save_openai_torchscript("ViT-B-32-quickgelu", 1, archive)
    monkeypatch.setitem(convert.TEST_ONLY_TRUSTED_TORCHSCRIPT, hashlib.sha256(archive.read_bytes()).hexdigest(),
                        "ViT-B-32-quickgelu")
    report = _convert(archive, tmp_path / "enc-openai")
    assert report["model"] == "ViT-B-32-quickgelu"
    assert_same_encoder(load_encoder(tmp_path / "enc-openai"), reference)
