"""Byte-level BPE: exact round trip for any Unicode, training, tokenizer.json persistence."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from cm3leon.core.interfaces import TextTokenizer
from cm3leon.tokenizers.text_bpe import BPETokenizer, byte_symbols, load_text_tokenizer

CORPUS = [
    "Image of a chameleon sitting on a branch.",
    "A red circle to the left of a blue square.",
    "Un caméléon vert sur une branche — très joli!",
    "变色龙在树枝上。 カメレオン 🦎🦎 emoji and ünïcödé",
    "def f(x):\n\treturn x ** 2  # code with tabs",
] * 40


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(CORPUS, vocab_size=600, min_frequency=2, show_progress=False)


def test_satisfies_protocol_and_has_no_specials(bpe: BPETokenizer) -> None:
    assert isinstance(bpe, TextTokenizer)
    assert 256 < bpe.vocab_size <= 600
    spec = json.loads(bpe.backend.to_str())
    assert spec["added_tokens"] == [] and spec["normalizer"] is None
    # "<break>" in a text is just text: it is split into ordinary pieces, never one special id.
    ids = bpe.encode("<break><eos>")
    assert len(ids) > 2 and bpe.decode(ids) == "<break><eos>"


def test_training_learns_merges(bpe: BPETokenizer) -> None:
    text = "Image of a chameleon"
    assert len(bpe.encode(text)) < len(text.encode("utf-8")) / 2
    assert len(BPETokenizer.byte_level().encode(text)) == len(text.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_any_unicode(bpe: BPETokenizer, text: str) -> None:
    tok = bpe
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1))
def test_untrained_byte_level_round_trip(text: str) -> None:
    tok = BPETokenizer.byte_level()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))  # one id per UTF-8 byte, in byte order
    assert tok.decode(ids) == text


def test_empty_and_whitespace(bpe: BPETokenizer) -> None:
    assert bpe.encode("") == [] and bpe.decode([]) == ""
    for text in (" ", "  leading", "trailing  ", "\n\n\t\r\n", "\x00\x01"):
        assert bpe.decode(bpe.encode(text)) == text


def test_very_long_inputs(bpe: BPETokenizer) -> None:
    rng = random.Random(0)
    words = ["chameleon", "branch", "红色", "🦎", "a", "\n", "  "]
    long_text = " ".join(rng.choice(words) for _ in range(60_000))  # ~400 kB
    ids = bpe.encode(long_text)
    assert bpe.decode(ids) == long_text
    one_word = "x" * 200_000  # no whitespace at all
    assert bpe.decode(bpe.encode(one_word)) == one_word


def test_batch_encoding_matches_single(bpe: BPETokenizer) -> None:
    texts = ["a red circle", "", "变色龙"]
    assert bpe.encode_batch(texts) == [bpe.encode(t) for t in texts]


def test_bad_inputs(bpe: BPETokenizer) -> None:
    with pytest.raises(TypeError, match="expected str"):
        bpe.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lone surrogate"):
        bpe.encode("ok \ud800 not ok")
    with pytest.raises(ValueError, match=rf"text token id {bpe.vocab_size} at position 1 is out of range"):
        bpe.decode([0, bpe.vocab_size])
    with pytest.raises(ValueError, match="text token id -1 at position 0"):
        bpe.decode([-1])
    with pytest.raises(ValueError, match="vocab_size must be >= 256"):
        BPETokenizer.train(["x"], vocab_size=100, show_progress=False)


def test_save_and_load_standard_tokenizer_json(bpe: BPETokenizer, tmp_path: Path) -> None:
    out = bpe.save(tmp_path / "tok")
    assert (out / "tokenizer.json").is_file() and (out / "COMPLETE").is_file()
    marker = json.loads((out / "cm3leon_tokenizer.json").read_text())
    assert marker["name"] == "bpe" and marker["vocab_size"] == bpe.vocab_size
    again = load_text_tokenizer(out)
    text = "Un caméléon 🦎 on a branch"
    assert again.encode(text) == bpe.encode(text) and again.vocab_size == bpe.vocab_size
    # A plain tokenizer.json (e.g. from another tool) loads too, and the library reads ours.
    assert load_text_tokenizer(out / "tokenizer.json").encode(text) == bpe.encode(text)
    assert Tokenizer.from_file(str(out / "tokenizer.json")).encode(text).ids == bpe.encode(text)
    with pytest.raises(FileExistsError):
        bpe.save(out)


def test_load_rejects_incomplete_and_lossy(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "tokenizer.json").write_text(BPETokenizer.byte_level().backend.to_str())
    with pytest.raises(ValueError, match="no COMPLETE marker"):
        load_text_tokenizer(partial)
    lossy = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(byte_symbols())}, merges=[]))
    lossy.normalizer = normalizers.Lowercase()
    lossy.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    path = tmp_path / "lossy.json"
    path.write_text(lossy.to_str())
    with pytest.raises(ValueError, match="lossy.json: has a normalizer"):
        load_text_tokenizer(path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a valid tokenizer.json"):
        load_text_tokenizer(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_text_tokenizer(tmp_path / "missing.json")


def test_paper_vocab_size_is_reachable() -> None:
    """A corpus rich enough yields exactly the requested vocabulary (here 2,000; paper 56,320)."""
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyzéü变色龙"
    docs = [" ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(2, 8))) for _ in range(30))
            for _ in range(800)]
    tok = BPETokenizer.train(docs, vocab_size=2000, min_frequency=1, show_progress=False)
    assert tok.vocab_size == 2000
