"""Paper-size augmented examples fit the shipped pretraining rows without losing any infill.

``configs/pretrain/{350m,760m,7b}.yaml`` stream Figure 9 examples (three retrieved
documents plus the query, each a 1,024-token image and its caption) into 4,096-token rows.
Four such documents do not fit, and the CM3 transform moves the masked spans to the end,
so cutting the example loses exactly the infill blocks.  Here ``cm3leon retrieval
augment`` writes paper-size examples (byte-level text, precomputed 1,024-code images of an
8,192-code book: the paper's token counts), and the trainer's own dataset and packer read
them under each shipped config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.config import load_config
from cm3leon.core.documents import Document, ImageSegment
from cm3leon.core.objective import cm3_inverse
from cm3leon.core.packing import PackingCollator
from cm3leon.core.shard_datasets import CM3StreamingDataset
from cm3leon.core.shards import DocumentShardWriter, iter_token_samples
from cm3leon.core.train.config import TrainConfig
from cm3leon.core.train.data import build_cm3_config
from cm3leon.retrieval.augment import augment_shards, document_tokenizer
from cm3leon.retrieval.config import AugmentConfig, DocumentsConfig

ROOT = Path(__file__).resolve().parents[2]
N = 12
WORDS = ["a", "photo", "of", "red", "blue", "green", "cube", "ball", "on", "the", "left", "right", "of", "small", "big", "table", "dog", "cat", "in", "snow"]


def _doc(i: int, rng: np.random.Generator) -> Document:
    caption = " ".join(rng.choice(WORDS, size=int(rng.integers(6, 30))))
    image = ImageSegment(codes=tuple(int(c) for c in rng.integers(0, 8192, 1024)))
    segments = (caption, image) if i % 4 else (image, caption)  # some image-first documents
    return Document.of(*segments, id=f"d{i}")


class ThreeNeighbours:
    """Stand-in retriever: the next three documents (the strategy is tested elsewhere)."""

    def __init__(self, docs: list[Document]) -> None:
        self.docs = docs

    def retrieve(self, batch, k, training=True):
        index = {d.id: i for i, d in enumerate(self.docs)}
        return [[self.docs[(index[q.id] + j) % len(self.docs)] for j in (1, 2, 3)][:k] for q in batch]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Document]]:
    root = tmp_path_factory.mktemp("paper_ra")
    rng = np.random.default_rng(0)
    docs = [_doc(i, rng) for i in range(N)]
    with DocumentShardWriter(root / "docs") as w:
        for d in docs:
            w.write(d)
    cfg = AugmentConfig(output=str(root / "ra"), data=DocumentsConfig(shards=[str(root / "docs")]),
                        bank=str(root / "unused"), text_tokenizer="bytes", image_codebook_size=8192,
                        tokens_per_image=1024, batch_size=4)  # fmt: skip
    report = augment_shards(cfg, progress=False, retriever=ThreeNeighbours(docs))
    assert report["retrieved_histogram"] == {"3": N} and report["documents"] == 4 * N
    return root / "ra", docs


@pytest.mark.parametrize("size", ["350m", "760m", "7b"])
def test_no_infill_block_is_ever_cut_under_the_paper_configs(shards, size: str, tmp_path: Path) -> None:
    path, docs = shards
    train = load_config(TrainConfig, ROOT / "configs" / "pretrain" / f"{size}.yaml")
    seq_len, cm3 = train.data.seq_len, build_cm3_config(train.data.cm3)
    doc_tok = document_tokenizer(AugmentConfig(output="-", bank="-", text_tokenizer="bytes",
                                               image_codebook_size=8192))  # fmt: skip
    vocab = doc_tok.vocab
    raw = list(iter_token_samples(path))
    assert all(s.tokens.size > seq_len for s in raw)  # as written, every example overflows the row

    ds = CM3StreamingDataset(local=str(path), batch_size=4, cm3=cm3, cm3_seed=1, max_tokens=seq_len)
    items = [ds[i] for i in range(N)]
    by_id = {d.id: d for d in docs}
    for item in items:
        assert item["tokens"].size <= seq_len
        assert 1 <= item["dropped_documents"] <= 2
        # Every mask has its infill block, and the query comes back whole at the end.
        restored = cm3_inverse(item["tokens"], vocab)
        query = doc_tok.encode(by_id[item["id"]])
        assert np.array_equal(restored[-query.size :], query)
    # The packer of the config (its overflow policy, one row per example) never truncates.
    rows = PackingCollator(seq_len, vocab, overflow=train.data.overflow, num_rows=len(items))(items)
    assert int(rows["num_truncated"].sum()) == 0 and int(rows["num_dropped"].sum()) == 0
    assert int(rows["num_shortened"].sum()) == N
    assert int(rows["num_documents_dropped"].sum()) == sum(i["dropped_documents"] for i in items)


def test_inspect_counts_the_examples_that_lose_documents(shards) -> None:
    from cm3leon.core.data_cli import inspect_dataset

    path, _ = shards
    fit = inspect_dataset(path, check_hashes=False, seq_len=4096)["fit"]
    assert fit["shortened"] == N and fit["documents_dropped"] >= N
    assert fit["query_too_long"] == 0 and fit["would_truncate"] == 0
    tight = inspect_dataset(path, check_hashes=False, seq_len=1024)["fit"]
    assert tight["query_too_long"] == N  # a 1,024-code image alone does not fit 1,024 tokens


def test_a_query_that_alone_does_not_fit_stops_with_its_name(shards) -> None:
    path, _ = shards
    ds = CM3StreamingDataset(local=str(path), batch_size=4, cm3=None, max_tokens=1000)
    with pytest.raises(ValueError, match=r"sample 0 \(id 'd0'\): the query document alone is \d+ tokens"):
        ds[0]
