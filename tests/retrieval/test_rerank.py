"""Banks that keep their vectors on disk and re-rank the index's shortlist against them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.config import ConfigError
from cm3leon.core.documents import Document
from cm3leon.retrieval import build as build_mod
from cm3leon.retrieval.bank import MemoryBank
from cm3leon.retrieval.config import BankConfig, DocumentsConfig, IndexConfig, RerankConfig
from cm3leon.retrieval.estimate import estimate_bank
from cm3leon.retrieval.index import IndexIntegrityError
from cm3leon.retrieval.rerank import search_reranked
from tests.retrieval.synthetic import shape_documents
from tests.retrieval.test_bank import HashEncoder, write_document_shards


def unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def docs(n: int) -> list[Document]:
    return [Document.of(f"document {i}", id=f"d{i}") for i in range(n)]


N, D, K = 600, 32, 10
BASE = unit(N, D, 1)
QUERIES = unit(25, D, 2)
EXACT = np.argsort(-(QUERIES @ BASE.T), axis=1, kind="stable")[:, :K]


def test_disk_rerank_returns_the_exact_top_k_when_the_shortlist_covers_it(tmp_path: Path) -> None:
    # 4-bit PQ of 4 sub-vectors alone is far from exact; re-ranking a shortlist that holds
    # the exact top k against float32 vectors must return exactly that top k, in order.
    plain = MemoryBank.build(BASE, docs(N), factory="IVF8,PQ4x4", search_params="nprobe=8")
    assert (plain.search(QUERIES, K)[1] != EXACT).any()
    bank = MemoryBank.build(BASE, docs(N), factory="IVF8,PQ4x4", search_params="nprobe=8",
                            rerank={"shortlist": N, "dtype": "float32"})
    scores, rows = bank.search(QUERIES, K)
    np.testing.assert_array_equal(rows, EXACT)
    np.testing.assert_allclose(scores, np.take_along_axis(QUERIES @ BASE.T, EXACT, axis=1), rtol=1e-5)
    loaded = MemoryBank.load(bank.save(tmp_path / "bank"))
    np.testing.assert_array_equal(loaded.search(QUERIES, K)[1], EXACT)
    # With a short shortlist: exact wherever the shortlist holds the exact top k.
    _, cand = loaded.index.search(QUERIES, 200)
    _, rows, read = search_reranked(loaded.index, loaded.disk_vectors, QUERIES, K, 200)
    covered = [q for q in range(len(QUERIES)) if set(EXACT[q]) <= set(cand[q])]
    assert covered and 0 < read <= 200 * len(QUERIES)
    np.testing.assert_array_equal(rows[covered], EXACT[covered])


def test_loaded_bank_memory_maps_its_vectors_and_ivf_has_no_direct_map(tmp_path: Path) -> None:
    import faiss

    bank = MemoryBank.build(BASE, docs(N), factory="IVF8,PQ4x4", rerank={"shortlist": 50, "dtype": "float16"})
    path = bank.save(tmp_path / "bank")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["rerank"] == {"source": "disk", "file": "vectors.npy", "dtype": "float16", "shortlist": 50}
    assert manifest["files"]["vectors.npy"]["bytes"] == (path / "vectors.npy").stat().st_size
    loaded = MemoryBank.load(path)
    assert isinstance(loaded.disk_vectors, np.memmap) and loaded.shortlist == 50
    assert faiss.extract_index_ivf(loaded.index).direct_map.type == faiss.DirectMap.NoMap
    rows = np.array([0, 7, 599, 7])
    np.testing.assert_array_equal(loaded.vectors(rows), BASE[rows].astype(np.float16).astype(np.float32))
    assert MemoryBank.load(path, shortlist=5).shortlist == 5
    copy = MemoryBank.load(loaded.save(tmp_path / "copy"))  # a loaded bank's memmap is copied, never moved
    assert (path / "vectors.npy").is_file()
    np.testing.assert_array_equal(copy.vectors(rows), loaded.vectors(rows))


def test_corrupted_vectors_file_is_a_named_error(tmp_path: Path) -> None:
    path = MemoryBank.build(BASE, docs(N), rerank={"shortlist": 20, "dtype": "float16"}).save(tmp_path / "bank")
    raw = bytearray((path / "vectors.npy").read_bytes())
    raw[-3] ^= 0xFF  # same size, one vector changed
    (path / "vectors.npy").write_bytes(bytes(raw))
    with pytest.raises(IndexIntegrityError, match="vectors.npy.*SHA-256"):
        MemoryBank.load(path)


def test_bank_without_the_option_loads_and_searches_as_before(tmp_path: Path) -> None:
    bank = MemoryBank.build(BASE, docs(N), factory="IVF8,Flat", search_params="nprobe=8")
    path = bank.save(tmp_path / "bank")
    manifest = json.loads((path / "manifest.json").read_text())
    # no rerank field: the manifest is the one earlier versions wrote and read
    assert "rerank" not in manifest and not (path / "vectors.npy").exists()
    loaded = MemoryBank.load(path)
    assert loaded.disk_vectors is None and loaded.rerank == {}
    np.testing.assert_array_equal(loaded.search(QUERIES, K)[1], EXACT)
    np.testing.assert_allclose(loaded.vectors(np.array([3, 4])), BASE[[3, 4]], rtol=1e-6)  # IVF direct map


def test_built_bank_with_disk_rerank_and_its_config_checks(tmp_path: Path) -> None:
    docs_ = shape_documents(200, seed=3)
    shards = write_document_shards(tmp_path / "docs", docs_)
    enc = HashEncoder()
    rerank = RerankConfig(source="disk", shortlist=40, dtype="float32")
    cfg = BankConfig(output=str(tmp_path / "bank"), data=DocumentsConfig(shards=[str(shards)]),
                     index=IndexConfig(factory="IVF4,PQ4x4", train_size=200, rerank=rerank), chunk_size=64)
    layout = build_mod.plan_layout(cfg)
    build_mod.embed_phase(cfg, enc, layout, progress=False)
    build_mod.train_phase(cfg, enc.dim, layout)
    build_mod.add_phase(cfg, enc.dim, layout)
    work_file = build_mod.work_dir(cfg) / "vectors.npy"
    bank = MemoryBank.load(build_mod.merge_phase(cfg, layout, 1, {"name": "hash", "fingerprint": enc.fingerprint}))
    assert not work_file.exists()  # moved into the bank, not copied
    vecs = enc.encode_documents(docs_).numpy()
    np.testing.assert_array_equal(bank.vectors(np.arange(200)), vecs)
    assert bank.search(vecs[:5], 1)[1][:, 0].tolist() == [0, 1, 2, 3, 4]
    bad = BankConfig(output=str(tmp_path / "b2"), encoder="x",
                     index=IndexConfig(rerank=RerankConfig(source="ssd")))
    with pytest.raises(ConfigError, match="bank.index.rerank.source"):
        build_mod.build_bank(bad, progress=False)


def test_estimate_reports_ram_and_disk_separately() -> None:
    plain = estimate_bank(1_000_000, 512, "IVF2048,PQ64x4fs")
    disk = estimate_bank(1_000_000, 512, "IVF2048,PQ64x4fs", rerank_dtype="float16", rerank_shortlist=320)
    assert plain.index.per_vector - disk.index.per_vector == 8  # no direct map
    assert disk.disk_vectors_bytes == 1_000_000 * 1024 + 128
    text = disk.render()
    assert "vectors.npy (disk, memmap, NOT resident)" in text and "320 vectors read per query" in text
    assert "RAM of the loaded bank" in text and "NOT resident" not in plain.render()


@pytest.mark.parametrize("name", ["bank_100m_disk", "bank_1b_disk"])
def test_shipped_disk_configs_state_their_ram_and_disk_and_build_scaled_down(name: str) -> None:
    import re

    from cm3leon.core.config import load_config
    from cm3leon.retrieval.config import RetrievalConfig
    from cm3leon.retrieval.estimate import estimate_for_config

    path = Path(__file__).resolve().parents[2] / "configs" / "retrieval" / f"{name}.yaml"
    cfg = load_config(RetrievalConfig, path).bank
    assert cfg.index.rerank.source == "disk"
    n = 100_000_000 if name == "bank_100m_disk" else 1_000_000_000
    est = estimate_for_config(cfg, documents=n, dim=512)
    header = path.read_text().split("\nbank:")[0]
    assert est.index.per_vector <= 64
    assert f"= {est.index.per_vector:.1f} B/vector" in header
    assert f"vectors.npy {est.disk_vectors_bytes / 2**30:.1f} GiB" in header or \
        f"vectors.npy {est.disk_vectors_bytes / 2**30:.1f}" in header.replace("\n#   ", " ")
    small = re.sub(r"IVF\d+", "IVF16", cfg.index.factory)
    assert small == "IVF16_HNSW32,PQ64x4fs"  # both configs: one structure, built once below
    if name != "bank_100m_disk":
        return
    base, queries = unit(N, 512, 5), unit(10, 512, 6)
    bank = MemoryBank.build(base, docs(N), factory=small, search_params="nprobe=16",
                            rerank={"shortlist": N, "dtype": cfg.index.rerank.dtype})
    exact = np.argsort(-(queries @ base.astype(np.float16).astype(np.float32).T), axis=1, kind="stable")[:, :K]
    np.testing.assert_array_equal(bank.search(queries, K)[1], exact)  # the shortlist is the whole bank


def test_retriever_rules_read_the_memory_mapped_vectors(tmp_path: Path) -> None:
    # The relevance and near-duplicate rules call MemoryBank.vectors; on a loaded IVF bank
    # with vectors on disk (no direct map: the index cannot reconstruct) they read vectors.npy.
    import faiss

    from cm3leon.retrieval.dense import DenseSearcher
    from cm3leon.retrieval.retriever import StrategyRetriever
    from cm3leon.retrieval.strategy import RetrievalStrategy
    from tests.retrieval.test_relevance import PartTable

    e = np.eye(4, dtype=np.float32)
    table = PartTable({"cap a": e[0], "cap b": e[1]}, {10: e[2], 20: e[3], 30: (e[2] + e[3]) / np.sqrt(2)})

    def picture(value: int) -> np.ndarray:
        return np.full((4, 4, 3), value, dtype=np.uint8)

    bank_docs = [Document.of("cap a", picture(10), id="query"), Document.of("cap a", picture(20), id="same-caption"),
                 Document.of("cap b", picture(10), id="same-image"), Document.of("cap b", picture(30), id="other")]
    built = MemoryBank.build(table.encode_documents(bank_docs).numpy(), bank_docs, factory="IVF1,PQ2x1",
                             rerank={"shortlist": 4, "dtype": "float32"})
    loaded = MemoryBank.load(built.save(tmp_path / "bank"))
    with pytest.raises(RuntimeError):
        loaded.index.reconstruct(0)  # no direct map
    assert faiss.extract_index_ivf(loaded.index).direct_map.type == faiss.DirectMap.NoMap
    retriever = StrategyRetriever(DenseSearcher(loaded, table), RetrievalStrategy(num_by_text=1, num_by_image=1))
    hits = retriever.retrieve_hits([bank_docs[0]], k=2)[0]
    assert [(h.id, h.modality) for h in hits] == [("same-caption", "text"), ("same-image", "image")]
    assert [h.relevance for h in hits] == pytest.approx([0.5, 0.5])
