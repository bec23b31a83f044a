"""The unified vocabulary built from trained tokenizers (core's helper): layout and range checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cm3leon.core.tokenization import build_document_tokenizer
from cm3leon.core.vocab import Vocabulary
from cm3leon.tokenizers.image_tokenizer import VQGANTokenizer
from cm3leon.tokenizers.text_bpe import PAPER_TEXT_VOCAB_SIZE, BPETokenizer


@pytest.fixture(scope="module")
def tokenizers() -> tuple[BPETokenizer, VQGANTokenizer]:
    bpe = BPETokenizer.train(["a red circle", "a blue square", "a red square"] * 20, vocab_size=300,
                             show_progress=False)
    vq = VQGANTokenizer.from_preset("small_32", seed=0, codebook_size=128)
    return bpe, vq


def test_layout_specials_text_image(tokenizers: tuple[BPETokenizer, VQGANTokenizer]) -> None:
    bpe, vq = tokenizers
    vocab = build_document_tokenizer(bpe, vq, num_sentinels=4).vocab
    s = vocab.num_special
    assert s == 4 + 2 * 4
    assert vocab.special_tokens()[:4] == ["<pad>", "<eos>", "<break>", "<unk>"]
    assert (vocab.pad_id, vocab.eos_id, vocab.break_id) == (0, 1, 2)
    assert vocab.mask_ids == (4, 5, 6, 7) and vocab.infill_ids == (8, 9, 10, 11)
    assert vocab.special_id("<infill:3>") == 11
    assert (vocab.text_offset, vocab.image_offset) == (s, s + bpe.vocab_size)
    assert vocab.size == s + bpe.vocab_size + 128
    assert [vocab.modality(i) for i in (0, s - 1, s, s + bpe.vocab_size - 1, s + bpe.vocab_size, vocab.size - 1)] \
        == ["special", "special", "text", "text", "image", "image"]
    assert vocab.token_name(vocab.image_offset + 5) == "img:5" and vocab.token_name(2) == "<break>"


def test_text_and_image_ids_round_trip_through_global_ids(tokenizers: tuple[BPETokenizer, VQGANTokenizer]) -> None:
    bpe, vq = tokenizers
    vocab = build_document_tokenizer(bpe, vq).vocab
    text_ids = bpe.encode("a red square")
    glob = vocab.text_to_global(text_ids)
    assert vocab.is_text(glob).all() and not vocab.is_image(glob).any()
    assert bpe.decode(vocab.global_to_text(glob).tolist()) == "a red square"
    codes = vq.encode([np.full((32, 32, 3), 200, np.uint8)])  # (1, 64)
    gimg = vocab.image_to_global(codes[0])
    assert vocab.is_image(gimg).all() and gimg.min() >= vocab.image_offset
    assert torch.equal(torch.from_numpy(vocab.global_to_image(gimg)), codes[0])
    assert vocab.count_modalities(np.concatenate([[vocab.eos_id], glob, [vocab.break_id], gimg])) == {
        "text": len(glob), "image": 64, "special": 2, "pad": 0}


def test_out_of_range_ids_raise_naming_id_and_origin(tokenizers: tuple[BPETokenizer, VQGANTokenizer]) -> None:
    bpe, vq = tokenizers
    vocab = build_document_tokenizer(bpe, vq).vocab
    with pytest.raises(ValueError, match=r"vq encoder: image code id 128 at position 2 out of range for the image code block \[0, 128\)"):
        vocab.image_to_global([0, 1, 128], where="vq encoder")
    with pytest.raises(ValueError, match=rf"bpe: text id {bpe.vocab_size} at position 0 out of range"):
        vocab.text_to_global([bpe.vocab_size], where="bpe")
    with pytest.raises(ValueError, match=r"caption span: text id 2 at position 1 out of range for the text block"):
        vocab.global_to_text([vocab.text_offset, vocab.break_id], where="caption span")
    with pytest.raises(ValueError, match=rf"decoder output: token id {vocab.size} at position \(0, 1\) out of range"):
        vocab.check_ids(np.array([[0, vocab.size]]), where="decoder output")
    with pytest.raises(ValueError, match="model input: token id -1 at position 0"):
        vocab.check_ids(torch.tensor([-1, 3]), where="model input")
    with pytest.raises(ValueError, match="token ids must be integers"):
        vocab.check_ids([0.5], where="x")
    with pytest.raises(ValueError, match="sentinel index 8 out of range"):
        vocab.mask_id(8)


def test_paper_sizes() -> None:
    vocab = Vocabulary(text_size=PAPER_TEXT_VOCAB_SIZE, image_size=8192)
    assert vocab.size == vocab.num_special + 56_320 + 8_192
    assert vocab.modality(vocab.image_offset) == "image" and vocab.modality(vocab.image_offset - 1) == "text"
