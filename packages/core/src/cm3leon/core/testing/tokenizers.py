"""Behavioural conformance suite for tokenizer plugins (``cm3leon_register_tokenizers``).

Subclass :class:`TokenizerConformance`, name the registered tokenizer and, if its factory
needs them, the options of a cheap instance::

    from cm3leon.core.testing import TokenizerConformance

    class TestMyTokenizer(TokenizerConformance):
        name = "my_bpe"
        options = {"vocab_size": 512}

The checks, by the spec's ``modality``:

* text: ``vocab_size`` is a positive int; every id of the sample texts (Unicode, spacing,
  the literal string ``"<break>"``, the empty string) lies in ``[0, vocab_size)``;
  ``decode(encode(text)) == text`` exactly (the text block holds no special tokens);
* image: ``encode`` of a small non-square image gives ``(1, num_tokens)`` integer codes
  in ``[0, codebook_size)``, the same codes alone or inside a batch and on a second call;
  ``decode`` gives one RGB ``image_size`` x ``image_size`` image per row, and encoding that
  image gives codes in range again (the image round trip);
* both: with a ``loader``, ``save(dir)`` then ``loader(dir)`` restores a tokenizer that
  encodes the samples identically.

Requires pytest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from cm3leon.core.interfaces import ImageTokenizer, TextTokenizer
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.registry import TokenizerSpec, resolve_object

__all__ = ["SAMPLE_TEXTS", "TokenizerConformance", "sample_image"]

SAMPLE_TEXTS: tuple[str, ...] = (
    "a red circle above a blue square",
    "Ünïcödé — 東京, naïve café 🐱",
    "  two  spaces,\ttab and\nnewline ",
    "<break> and <mask:0> are plain text here",
    "",
)


def sample_image(width: int = 24, height: int = 16, seed: int = 0) -> Any:
    """A small deterministic RGB ``PIL.Image`` (non-square, to exercise preprocessing)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width, dtype=np.float64)[None, :, None]  # (1, W, 1)
    noise = rng.integers(0, 40, size=(height, width, 3))
    pixels = np.clip(ramp * np.array([1.0, 0.5, 0.2]) + noise, 0, 255).astype(np.uint8)  # (H, W, 3)
    return Image.fromarray(pixels)


def _codes(value: Any) -> np.ndarray:
    codes = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    assert np.issubdtype(codes.dtype, np.integer), f"codes have dtype {codes.dtype}, expected integers"
    return codes.astype(np.int64)


class TokenizerConformance:
    """Checks every registered tokenizer must pass; subclass and set :attr:`name`.

    Attributes:
        name: the registered tokenizer name.
        options: keyword options of the factory for a cheap instance.
        texts: sample texts of the text checks.
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    texts: ClassVar[tuple[str, ...]] = SAMPLE_TEXTS

    # ------------------------------------------------------------- fixtures
    @pytest.fixture
    def tokenizer_name(self) -> str:
        return self.name

    @pytest.fixture
    def tokenizer_options(self) -> dict[str, Any]:
        return dict(self.options)

    @pytest.fixture
    def registries(self) -> Any:
        """The registries to look the component up in (override to test an uninstalled plugin)."""
        return get_registries()

    @pytest.fixture
    def spec(self, registries: Any, tokenizer_name: str) -> TokenizerSpec:
        return registries.tokenizers.get(tokenizer_name)

    @pytest.fixture
    def tokenizer(self, spec: TokenizerSpec, tokenizer_options: dict[str, Any]) -> Any:
        return spec.build(**tokenizer_options)

    @pytest.fixture
    def images(self) -> list[Any]:
        return [sample_image(24, 16, seed=0), sample_image(16, 16, seed=1)]

    # ---------------------------------------------------------------- checks
    def test_satisfies_protocol(self, spec: TokenizerSpec, tokenizer: Any) -> None:
        protocol = TextTokenizer if spec.modality == "text" else ImageTokenizer
        assert isinstance(tokenizer, protocol), f"{spec.name}: {type(tokenizer).__name__} is not a {protocol.__name__}"
        sizes = ("vocab_size",) if spec.modality == "text" else ("codebook_size", "num_tokens", "image_size")
        for attr in sizes:
            value = getattr(tokenizer, attr)
            assert isinstance(value, int) and value > 0, f"{spec.name}.{attr} = {value!r}, expected a positive int"

    def test_text_round_trip_and_id_range(self, spec: TokenizerSpec, tokenizer: Any) -> None:
        if spec.modality != "text":
            pytest.skip(f"{spec.name} is an image tokenizer")
        for text in self.texts:
            ids = tokenizer.encode(text)
            assert all(isinstance(i, (int, np.integer)) for i in ids), f"{spec.name}: non-integer ids for {text!r}"
            bad = [int(i) for i in ids if not 0 <= int(i) < tokenizer.vocab_size]
            assert not bad, f"{spec.name}: ids {bad[:5]} of {text!r} outside [0, {tokenizer.vocab_size})"
            assert bool(ids) == bool(text), f"{spec.name}: {text!r} encodes to {len(ids)} ids"
            back = tokenizer.decode(ids)
            assert back == text, f"{spec.name}: {text!r} came back as {back!r}"

    def test_image_codes_in_range_and_deterministic(self, spec: TokenizerSpec, tokenizer: Any,
                                                    images: list[Any]) -> None:  # fmt: skip
        if spec.modality != "image":
            pytest.skip(f"{spec.name} is a text tokenizer")
        alone = _codes(tokenizer.encode(images[:1]))
        assert alone.shape == (1, tokenizer.num_tokens), f"{spec.name}: codes of shape {alone.shape}"
        assert alone.min() >= 0 and alone.max() < tokenizer.codebook_size, (
            f"{spec.name}: codes in [{alone.min()}, {alone.max()}], codebook {tokenizer.codebook_size}"
        )
        batch = _codes(tokenizer.encode(images))
        assert batch.shape == (len(images), tokenizer.num_tokens)
        assert np.array_equal(batch[:1], alone), f"{spec.name}: codes of an image depend on its batch"
        assert np.array_equal(_codes(tokenizer.encode(images[:1])), alone), f"{spec.name}: encode is not deterministic"

    def test_image_round_trip(self, spec: TokenizerSpec, tokenizer: Any, images: list[Any]) -> None:
        if spec.modality != "image":
            pytest.skip(f"{spec.name} is a text tokenizer")
        codes = tokenizer.encode(images)
        decoded = tokenizer.decode(codes)
        assert len(decoded) == len(images), f"{spec.name}: {len(decoded)} images decoded from {len(images)} rows"
        side = tokenizer.image_size
        for image in decoded:
            assert image.mode == "RGB" and image.size == (side, side), f"{spec.name}: decoded {image.mode} {image.size}"
        again = _codes(tokenizer.encode(decoded))
        assert again.shape == (len(images), tokenizer.num_tokens) and again.max() < tokenizer.codebook_size

    def test_save_and_loader_restore(self, spec: TokenizerSpec, tokenizer: Any, images: list[Any],
                                     tmp_path: Path) -> None:  # fmt: skip
        if spec.loader is None:
            pytest.skip(f"{spec.name} declares no loader")
        saved = tmp_path / "saved"
        tokenizer.save(saved)
        restored = resolve_object(spec.loader)(saved)
        if spec.modality == "text":
            assert restored.vocab_size == tokenizer.vocab_size
            for text in self.texts:
                assert restored.encode(text) == tokenizer.encode(text), f"{spec.name}: restored encodes {text!r} differently"
        else:
            assert (restored.codebook_size, restored.num_tokens) == (tokenizer.codebook_size, tokenizer.num_tokens)
            assert np.array_equal(_codes(restored.encode(images)), _codes(tokenizer.encode(images))), (
                f"{spec.name}: the restored tokenizer encodes differently"
            )
