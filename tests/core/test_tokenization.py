"""build_document_tokenizer: the one path from tokenizer values to a DocumentTokenizer."""

from __future__ import annotations

import pytest

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.serialize import DocumentTokenizer
from cm3leon.core.tokenization import ByteTokenizer, build_document_tokenizer
from cm3leon.core.vocab import Vocabulary


class _Codes:
    """An image tokenizer that only declares its sizes (documents carry their codes)."""

    codebook_size = 16
    num_tokens = 4
    image_size = 2


def test_names_resolve_and_the_vocabulary_follows_the_tokenizers(tmp_path) -> None:
    ByteTokenizer().save(tmp_path / "bytes")
    for value in ("bytes", f"bytes:{tmp_path / 'bytes'}", str(tmp_path / "bytes")):
        tok = build_document_tokenizer(value, _Codes(), num_sentinels=3)
        assert isinstance(tok, DocumentTokenizer) and isinstance(tok.text_tokenizer, ByteTokenizer)
        assert tok.vocab == Vocabulary(text_size=256, image_size=16, num_sentinels=3)
        assert tok.tokens_per_image == 4


def test_precomputed_codes_need_a_codebook_size() -> None:
    tok = build_document_tokenizer("bytes", image_codebook_size=32, tokens_per_image=4, query_loss_weight=2.0)
    assert tok.image_tokenizer is None and tok.vocab.image_size == 32 and tok.tokens_per_image == 4
    doc = Document((TextSegment("a cat"), ImageSegment(codes=(1, 2, 3, 31))))
    assert tok.decode(tok.encode(doc)) == doc
    with pytest.raises(ValueError, match="no image tokenizer and no image codebook size"):
        build_document_tokenizer("bytes")


def test_a_given_vocabulary_is_checked_not_rebuilt() -> None:
    vocab = Vocabulary(text_size=256, image_size=16, num_sentinels=2)
    assert build_document_tokenizer(ByteTokenizer(), _Codes(), vocab=vocab).vocab is vocab
    with pytest.raises(ValueError, match="codebook_size 16 != vocabulary image_size 64"):
        build_document_tokenizer("bytes", _Codes(), vocab=Vocabulary(text_size=256, image_size=64))


def test_unknown_or_wrong_modality_names_raise() -> None:
    with pytest.raises(ValueError, match="registered text tokenizers: .*bytes"):
        build_document_tokenizer("no-such-tokenizer", image_codebook_size=8)
    with pytest.raises(ValueError, match="'bytes' is a text tokenizer, not image"):
        build_document_tokenizer("bytes", "bytes")
