"""The tokenizers plugin: registrations, lazy import, resolution by name and by directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cm3leon.core.interfaces import ImageTokenizer, TextTokenizer
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.testing import CommandConformance, ComponentConformance
from cm3leon.core.tokenization import resolve_tokenizer
from cm3leon.tokenizers.image_tokenizer import VQGANTokenizer
from cm3leon.tokenizers.text_bpe import BPETokenizer


class TestBPEConformance(ComponentConformance):
    registry = "tokenizers"
    name = "bpe"


class TestVQGANConformance(ComponentConformance):
    registry = "tokenizers"
    name = "vqgan"


class TestChameleonConformance(ComponentConformance):
    registry = "tokenizers"
    name = "chameleon_vqgan"


class TestCommandConformance(CommandConformance):
    name = "tokenizers"


def test_registrations() -> None:
    reg = get_registries()
    specs = {n: reg.tokenizers.get(n) for n in ("bpe", "vqgan", "chameleon_vqgan")}
    assert {n: s.modality for n, s in specs.items()} == {"bpe": "text", "vqgan": "image", "chameleon_vqgan": "image"}
    assert reg.tokenizers.registration("vqgan").distribution == "cm3leon-tokenizers"
    assert reg.config_schemas.get("tokenizers").directories == ("tokenizers",)
    assert "vq_dead_code_restart" in reg.callbacks


def test_factories_build_protocol_objects() -> None:
    reg = get_registries()
    bpe = reg.tokenizers.build("bpe")
    vq = reg.tokenizers.build("vqgan", preset="small_32", seed=0)
    assert isinstance(bpe, TextTokenizer) and bpe.vocab_size == 256
    assert isinstance(vq, ImageTokenizer) and vq.num_tokens == 64


def test_resolve_saved_tokenizers_by_directory(tmp_path: Path) -> None:
    BPETokenizer.train(["some text here"] * 10, vocab_size=270, show_progress=False).save(tmp_path / "bpe")
    VQGANTokenizer.from_preset("small_32", seed=0).save(tmp_path / "vq")
    text = resolve_tokenizer(str(tmp_path / "bpe"), "text")
    image = resolve_tokenizer(f"vqgan:{tmp_path / 'vq'}", "image")
    assert isinstance(text, BPETokenizer) and text.decode(text.encode("some text")) == "some text"
    assert isinstance(image, VQGANTokenizer) and image.codebook_size == 512
    assert isinstance(resolve_tokenizer(str(tmp_path / "vq"), "image"), VQGANTokenizer)


def test_listing_plugins_imports_none_of_our_modules() -> None:
    """Lazy factories: registering imports only ``cm3leon.tokenizers.plugin`` (no tokenizers lib)."""
    code = (
        "import sys; from cm3leon.core.plugin_manager import get_registries; r = get_registries(); "
        "assert 'vqgan' in r.tokenizers; "
        "ours = [m for m in sys.modules if m.startswith('cm3leon.tokenizers.') and m != 'cm3leon.tokenizers.plugin']; "
        "assert not ours and 'tokenizers' not in sys.modules, (ours, 'tokenizers' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
