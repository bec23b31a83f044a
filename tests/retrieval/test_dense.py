"""The dense CLIP retriever: query parts, CLIP-token query dropout, banks on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cm3leon.core.documents import Document, ImageSegment
from cm3leon.retrieval.bank import BankError, MemoryBank
from cm3leon.retrieval.dense import DenseSearcher, clip_retriever, drop_clip_tokens
from tests.retrieval.synthetic import render, shape_documents


def test_drop_clip_tokens_keeps_start_end_and_padding(tiny_encoder) -> None:
    tokens = tiny_encoder.tokenize(["one two three four five six seven eight nine ten"])[0]
    eot = tiny_encoder.tokenizer.eot_token_id
    n_words = int((tokens > 0).sum()) - 2
    out = drop_clip_tokens(tokens, 0.2, np.random.default_rng(0), eot_id=eot)
    assert out[0] == tokens[0] and out.shape == tokens.shape
    kept = out[out > 0].tolist()
    assert kept[-1] == eot and len(kept) - 2 == n_words - round(0.2 * n_words)
    words = tokens[1 : n_words + 1].tolist()
    assert [t for t in kept[1:-1]] == [t for t in words if t in kept[1:-1]]  # order kept
    again = drop_clip_tokens(tokens, 0.2, np.random.default_rng(0), eot_id=eot)
    assert torch.equal(out, again)


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return shape_documents(40, seed=21)


@pytest.fixture(scope="module")
def searcher(docs, tiny_encoder) -> DenseSearcher:
    vecs = tiny_encoder.encode_documents(docs).numpy()
    return DenseSearcher(MemoryBank.build(vecs, docs), tiny_encoder)


def test_query_parts_and_dropout(searcher, tiny_encoder) -> None:
    text = "a yellow square on the right next to a purple circle and a green triangle"
    q = [Document.of(text, render("red", "circle", "left"), id="q"), Document.of(render("blue", "square", "left"))]
    clean = searcher.encode_queries(q, dropout=0.0, seeds=None)
    np.testing.assert_allclose(clean.parts["text"][0], tiny_encoder.encode_text([text])[0].numpy(), atol=1e-5)
    assert clean.parts["text"][1] is None  # image-only query: no text part
    np.testing.assert_allclose(clean.parts["image"][1], tiny_encoder.encode_image([q[1].images[0]])[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(clean.vectors[0], tiny_encoder.encode_documents(q[:1])[0].numpy(), atol=1e-5)
    dropped = searcher.encode_queries(q, dropout=0.2, seeds=[1, 2])
    assert not np.allclose(dropped.parts["text"][0], clean.parts["text"][0])
    np.testing.assert_allclose(dropped.parts["image"][0], clean.parts["image"][0])  # images are not dropped
    np.testing.assert_allclose(dropped.vectors, clean.vectors)  # duplicate rule uses the clean query
    again = searcher.encode_queries(q, dropout=0.2, seeds=[1, 2])
    np.testing.assert_array_equal(again.parts["text"][0], dropped.parts["text"][0])


def test_vq_only_query_images_are_skipped_without_decoder(searcher) -> None:
    q = Document((ImageSegment(codes=(1, 2)),), id="codes")
    enc = searcher.encode_queries([q, Document.of("x", ImageSegment(codes=(3,)))], dropout=0.0, seeds=None)
    assert enc.parts["image"] == [None, None] and enc.parts["text"][0] is None


def test_bank_directory_round_trip_uses_recorded_encoder(tmp_path: Path, docs, tiny_encoder, tiny_encoder_dir) -> None:
    vecs = tiny_encoder.encode_documents(docs).numpy()
    info = {"name": tiny_encoder.name, "fingerprint": tiny_encoder.fingerprint, "path": str(tiny_encoder_dir)}
    MemoryBank.build(vecs, docs, encoder=info).save(tmp_path / "bank")
    from_disk = clip_retriever(tmp_path / "bank")  # encoder found through the manifest
    in_memory = clip_retriever(documents=docs, encoder=tiny_encoder)
    q = [Document.of("a red circle on the left", id="q")]
    assert [d.id for d in from_disk.retrieve(q, 3)[0]] == [d.id for d in in_memory.retrieve(q, 3)[0]]


def test_bank_of_another_encoder_is_refused(tmp_path: Path, docs, tiny_encoder) -> None:
    vecs = tiny_encoder.encode_documents(docs).numpy()
    MemoryBank.build(vecs, docs, encoder={"name": "other", "fingerprint": "0123"}).save(tmp_path / "bank")
    with pytest.raises(BankError, match="built with encoder 0123"):
        clip_retriever(tmp_path / "bank", encoder=tiny_encoder)
    with pytest.raises(ValueError, match="exactly one of bank"):
        clip_retriever()
