"""Retrieval-augmented token shards: Figure 9 examples, atomic output, reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.documents import Document, ImageSegment
from cm3leon.core.shards import DocumentShardWriter, iter_token_samples, verify_dataset
from cm3leon.retrieval.augment import augment_shards, build_retriever, document_tokenizer
from cm3leon.retrieval.bank import MemoryBank
from cm3leon.retrieval.config import AugmentConfig, DocumentsConfig
from cm3leon.retrieval.strategy import RetrievalStrategy
from tests.retrieval.synthetic import shape_documents

CODEBOOK = 64


def with_codes(doc: Document) -> Document:
    """Attach 16 stand-in VQ codes (quantised colours of a 4x4 grid) to the document's image."""
    img = np.asarray(doc.images[0].pil())
    cells = img.reshape(4, 8, 4, 8, 3).mean(axis=(1, 3)) // 64  # (4, 4, 3) in 0..3
    codes = (cells[..., 0] * 16 + cells[..., 1] * 4 + cells[..., 2]).astype(int).ravel()
    segs = tuple(ImageSegment(image=s.image, codes=tuple(int(c) for c in codes)) if isinstance(s, ImageSegment) else s
                 for s in doc.segments)
    return doc.replace(segments=segs)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_encoder, tiny_encoder_dir):
    root = tmp_path_factory.mktemp("augment")
    docs = [with_codes(d) for d in shape_documents(48, seed=31)]
    with DocumentShardWriter(root / "docs") as w:
        for d in docs:
            w.write(d)
    vecs = tiny_encoder.encode_documents(docs).numpy()
    info = {"name": tiny_encoder.name, "fingerprint": tiny_encoder.fingerprint, "path": str(tiny_encoder_dir)}
    MemoryBank.build(vecs, docs, encoder=info).save(root / "bank")
    return root, docs


def cfg_for(root: Path, out: str, **kw) -> AugmentConfig:
    base = dict(output=str(root / out), data=DocumentsConfig(shards=[str(root / "docs")]), bank=str(root / "bank"),
                text_tokenizer="bytes", image_codebook_size=CODEBOOK, tokens_per_image=16, batch_size=16,
                strategy=RetrievalStrategy(seed=5))
    return AugmentConfig(**{**base, **kw})


def test_examples_follow_figure_9_with_three_retrieved_documents(setup) -> None:
    root, docs = setup
    cfg = cfg_for(root, "ra")
    report = augment_shards(cfg, progress=False)
    assert report["examples"] == len(docs) and report["retrieved_histogram"] == {"3": len(docs)}
    info = verify_dataset(root / "ra")
    assert info.kind == "tokens" and info.meta["k"] == 3 and info.meta["training"] is True
    doc_tok = document_tokenizer(cfg)
    retriever = build_retriever(cfg)  # a second, independent instance: same choices
    vocab = doc_tok.vocab
    samples = list(iter_token_samples(root / "ra"))
    # Retrieval is per query: one batch of all queries gives what augment's batches of 16 gave.
    all_retrieved = retriever.retrieve(docs, 3, training=True)
    for sample, query, retrieved in zip(samples, docs, all_retrieved, strict=True):
        assert sample.id == query.id
        assert len(retrieved) == 3 and query.id not in [d.id for d in retrieved]
        expected = doc_tok.encode_example(query, retrieved)
        np.testing.assert_array_equal(sample.tokens, expected)
        # Figure 9: <eos>, then the retrieved documents, then the query document last.
        assert sample.tokens[0] == vocab.eos_id
        query_ids = doc_tok.encode(query)
        np.testing.assert_array_equal(sample.tokens[-len(query_ids):], query_ids)
        assert int((sample.tokens == vocab.eos_id).sum()) == 1
        assert int(vocab.is_image(sample.tokens).sum()) == 4 * 16  # four images of 16 codes
    # Query dropout and 3-of-4 selection differ from inference-mode retrieval for some queries.
    inference = retriever.retrieve(docs, 3)
    assert [[d.id for d in r] for r in inference] != [[d.id for d in r] for r in all_retrieved]


def test_existing_output_is_reused_and_overwrite_rewrites(setup) -> None:
    root, docs = setup
    cfg = cfg_for(root, "ra2", keep_unaugmented=True, training=False, k=2)
    first = augment_shards(cfg, progress=False)
    assert first["examples"] == 2 * len(docs)
    assert augment_shards(cfg, progress=False)["reused"] is True
    ids = [s.id for s in iter_token_samples(root / "ra2")]
    assert ids[:2] == [docs[0].id, f"{docs[0].id}#k0"]
    rewritten = augment_shards(cfg, progress=False, overwrite=True)
    assert rewritten["examples"] == 2 * len(docs) and "reused" not in rewritten


def test_bm25_through_the_same_command(setup, tmp_path: Path) -> None:
    root, docs = setup
    from cm3leon.retrieval.bm25 import BM25Bank

    BM25Bank.build(docs).save(tmp_path / "bm25")
    from cm3leon.core.config import ComponentConfig

    cfg = cfg_for(root, "ra-bm25", bank=str(tmp_path / "bm25"), retriever=ComponentConfig(name="bm25"))
    report = augment_shards(cfg, progress=False)
    assert report["examples"] == len(docs)


def test_failure_midway_leaves_no_output(setup, tmp_path: Path) -> None:
    root, docs = setup
    bad = docs[:20] + [Document.of("broken", ImageSegment(codes=(1, 2, 3)), id="bad")]  # 3 codes, not 16
    with DocumentShardWriter(tmp_path / "docs") as w:
        for d in bad:
            w.write(d)
    cfg = cfg_for(root, "unused", output=str(tmp_path / "out"), data=DocumentsConfig(shards=[str(tmp_path / "docs")]))
    with pytest.raises(ValueError, match="'bad'.*3 codes, expected 16"):
        augment_shards(cfg, progress=False)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_unknown_retriever_and_bad_options_are_named(setup) -> None:
    root, _ = setup
    from cm3leon.core.config import ComponentConfig

    with pytest.raises(ValueError, match="unknown retriever 'nope'"):
        build_retriever(cfg_for(root, "x", retriever=ComponentConfig(name="nope")))
    with pytest.raises(ValueError, match="augment.retriever.options: unknown retriever option.*bogus"):
        build_retriever(cfg_for(root, "x", retriever=ComponentConfig(name="bm25", options={"bogus": 1})))


class CountingTokenizer:
    """Stand-in image tokenizer: 16 codes from the mean colour; counts images encoded."""

    codebook_size = CODEBOOK
    num_tokens = 16

    def __init__(self) -> None:
        self.images = 0

    def encode(self, images):
        import torch

        self.images += len(images)
        rows = [[int(np.asarray(im).mean()) % CODEBOOK] * 16 for im in images]
        return torch.tensor(rows)


def test_code_cache_encodes_each_bank_image_once() -> None:
    from cm3leon.retrieval.augment import CodeCache

    docs = shape_documents(6, seed=2)
    tok = CountingTokenizer()
    cache = CodeCache(tok)
    first = cache.attach([docs[0], docs[1], docs[0]])
    assert tok.images == 2
    second = cache.attach([docs[1], docs[2]])
    assert tok.images == 3  # docs[1] came from the cache
    assert first[1] == second[0] and first[0] == first[2]
    assert all(seg.codes is not None and seg.image is not None for d in first + second for seg in d.images)
    anonymous = [docs[3].replace(id=""), docs[4].replace(id="")]
    out = cache.attach(anonymous)
    assert tok.images == 5 and all(d.images[0].codes is not None for d in out)
    assert len(cache.codes) == 3  # documents without ids are never cached


def test_pixel_only_documents_with_a_registered_image_tokenizer(tmp_path: Path, tiny_encoder,
                                                                 tiny_encoder_dir) -> None:
    from cm3leon.core.plugin_manager import get_registries

    if "vqgan" not in get_registries().tokenizers:
        pytest.skip("cm3leon-tokenizers (vqgan) is not installed")
    docs = shape_documents(24, seed=61)  # pixels only, no codes
    with DocumentShardWriter(tmp_path / "docs") as w:
        for d in docs:
            w.write(d)
    info = {"name": "t", "fingerprint": tiny_encoder.fingerprint, "path": str(tiny_encoder_dir)}
    MemoryBank.build(tiny_encoder.encode_documents(docs).numpy(), docs, encoder=info).save(tmp_path / "bank")
    cfg = AugmentConfig(output=str(tmp_path / "ra"), data=DocumentsConfig(shards=[str(tmp_path / "docs")]),
                        bank=str(tmp_path / "bank"), text_tokenizer="bytes", image_tokenizer="vqgan")
    report = augment_shards(cfg, progress=False)
    vocab = verify_dataset(tmp_path / "ra").vocab
    per_image = document_tokenizer(cfg).tokens_per_image
    assert report["examples"] == 24
    for sample in iter_token_samples(tmp_path / "ra"):
        assert sample.tokens[0] == vocab.eos_id
        assert int(vocab.is_image(sample.tokens).sum()) == 4 * per_image
