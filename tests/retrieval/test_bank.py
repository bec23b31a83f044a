"""Memory bank: FAISS factories, save/load with hash checks, sharded build and merge."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.documents import Document
from cm3leon.retrieval import build as build_mod
from cm3leon.retrieval.bank import BankError, MemoryBank
from cm3leon.retrieval.config import BankConfig, DocumentsConfig, IndexConfig
from cm3leon.retrieval.index import IndexIntegrityError, make_index, merge_indexes
from tests.retrieval.synthetic import shape_documents


def random_unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def text_docs(n: int) -> list[Document]:
    return [Document.of(f"document number {i}", id=f"d{i}") for i in range(n)]


class HashEncoder:
    """Deterministic stand-in for CLIP: a document's vector depends only on its id."""

    name = "hash"
    fingerprint = "hash-encoder"
    dim = 16

    def __init__(self) -> None:
        self.calls = 0

    def encode_documents(self, docs, code_decoder=None):
        import torch

        self.calls += 1
        rows = [random_unit(1, self.dim, seed=abs(hash(d.id)) % (2**32))[0] for d in docs]
        return torch.from_numpy(np.stack(rows))


# ------------------------------------------------------------------ index


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW16", "IVF8,PQ4x4"])
def test_factories_build_and_search(factory: str) -> None:
    vecs = random_unit(2000, 16)
    bank = MemoryBank.build(vecs, text_docs(2000), factory=factory, search_params="nprobe=16" if "IVF" in factory else "")
    scores, rows = bank.search(vecs[:50], 5)
    assert scores.shape == rows.shape == (50, 5)
    if "PQ" not in factory:  # exact or near-exact: every vector finds itself first
        assert (rows[:, 0] == np.arange(50)).mean() > 0.9
    assert bank.vectors(np.array([3, 7])).shape == (2, 16)


def test_bad_factory_string_is_named() -> None:
    with pytest.raises(ValueError, match="invalid FAISS index factory string 'Bogus12'"):
        make_index(8, "Bogus12")


def test_k_larger_than_bank_returns_all_rows() -> None:
    vecs = random_unit(5, 8)
    bank = MemoryBank.build(vecs, text_docs(5))
    scores, rows = bank.search(vecs[:2], 50)
    assert rows.shape == (2, 5) and sorted(rows[0].tolist()) == list(range(5))
    with pytest.raises(ValueError, match="do not match bank dim 8"):
        bank.search(random_unit(1, 4), 3)


def test_missing_results_are_minus_one_and_never_reach_the_strategy() -> None:
    """An IVF search probing one list returns fewer than k hits; FAISS pads with -1."""
    from cm3leon.retrieval.strategy import RetrievalStrategy, select_candidates

    vecs = random_unit(400, 16, seed=4)
    bank = MemoryBank.build(vecs, text_docs(400), factory="IVF16,Flat", search_params="nprobe=1")
    scores, rows = bank.search(vecs[:1], 400)
    assert rows.shape == (1, 400) and (rows[0] == -1).any() and (rows[0] >= 0).any()
    kept = select_candidates(
        rows[0], scores[0], quota=400, strategy=RetrievalStrategy(max_score=2.0, duplicate_threshold=2.0),
        row_id=lambda r: bank.ids[r], taken_ids=set(), taken_vectors=[], vectors=bank.vectors,
        relevance=lambda r: np.zeros(len(r)), modality="text",
    )
    assert [hit.id for hit, _ in kept] == [bank.ids[r] for r in rows[0] if r >= 0]


# ---------------------------------------------------------- persistence


def saved_bank(tmp_path: Path, factory: str = "Flat") -> tuple[MemoryBank, Path]:
    vecs = random_unit(300, 16, seed=1)
    docs = shape_documents(300, seed=2)
    bank = MemoryBank.build(vecs, docs, factory=factory, encoder={"name": "x", "fingerprint": "fp1"})
    return bank, bank.save(tmp_path / "bank")


def test_save_load_round_trip(tmp_path: Path) -> None:
    bank, path = saved_bank(tmp_path, "IVF8,Flat")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["size"] == 300 and manifest["dim"] == 16 and manifest["factory"] == "IVF8,Flat"
    assert len(manifest["files"]["index.faiss"]["sha256"]) == 64
    loaded = MemoryBank.load(path, expected_dim=16, encoder_fingerprint="fp1")
    q = random_unit(10, 16, seed=9)
    np.testing.assert_array_equal(loaded.search(q, 7)[1], bank.search(q, 7)[1])
    # Search parameters can be overridden at load: probing all 8 lists is exact search.
    exhaustive = MemoryBank.load(path, search_params="nprobe=8")
    exact = np.argsort(-(q @ random_unit(300, 16, seed=1).T), axis=1)[:, :7]
    np.testing.assert_array_equal(exhaustive.search(q, 7)[1], exact)
    assert loaded.ids == bank.ids
    assert loaded.documents([0, 299]) == bank.documents([0, 299])
    np.testing.assert_allclose(loaded.vectors(np.array([4])), bank.vectors(np.array([4])))


@pytest.fixture
def faiss_never_reads(monkeypatch: pytest.MonkeyPatch):
    import faiss

    def boom(*args, **kwargs):
        raise AssertionError("FAISS was asked to read an unverified index")

    monkeypatch.setattr(faiss, "deserialize_index", boom)
    monkeypatch.setattr(faiss, "read_index", boom)


def test_tampered_index_is_refused_before_faiss_reads_it(tmp_path: Path, faiss_never_reads) -> None:
    _, path = saved_bank(tmp_path)
    data = bytearray((path / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match="index.faiss: SHA-256 .* does not match"):
        MemoryBank.load(path)


def test_truncated_index_is_refused_before_faiss_reads_it(tmp_path: Path, faiss_never_reads) -> None:
    _, path = saved_bank(tmp_path)
    data = (path / "index.faiss").read_bytes()
    (path / "index.faiss").write_bytes(data[:-100])
    with pytest.raises(IndexIntegrityError, match="truncated or replaced"):
        MemoryBank.load(path)


def test_dimension_mismatch_is_refused_before_faiss_reads_it(tmp_path: Path, faiss_never_reads) -> None:
    _, path = saved_bank(tmp_path)
    with pytest.raises(BankError, match="bank dimension 16 != encoder dimension 32"):
        MemoryBank.load(path, expected_dim=32)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["dim"] = 32  # a manifest that lies about the dimension: the header disagrees
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexIntegrityError, match="index dimension 16 does not match manifest dim 32"):
        MemoryBank.load(path)


def test_other_encoder_and_incomplete_bank_are_refused(tmp_path: Path) -> None:
    _, path = saved_bank(tmp_path)
    with pytest.raises(BankError, match="built with encoder fp1"):
        MemoryBank.load(path, encoder_fingerprint="fp2")
    (path / "COMPLETE").unlink()
    with pytest.raises(BankError, match="no COMPLETE marker"):
        MemoryBank.load(path)


def test_tampered_documents_are_refused(tmp_path: Path) -> None:
    _, path = saved_bank(tmp_path)
    with open(path / "documents.jsonl", "ab") as fh:
        fh.write(b"{}\n")
    with pytest.raises(IndexIntegrityError, match="documents.jsonl: size or SHA-256"):
        MemoryBank.load(path)


def _rerecord(path: Path, *names: str) -> None:
    """Make the manifest agree with the files as they now are (a careless edit or an attacker)."""
    from cm3leon.core.io import sha256_file

    manifest = json.loads((path / "manifest.json").read_text())
    for name in names:
        manifest["files"][name] = {"bytes": (path / name).stat().st_size, "sha256": sha256_file(path / name)}
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_index_ntotal_must_equal_the_id_count(tmp_path: Path) -> None:
    _, path = saved_bank(tmp_path)
    ids = json.loads((path / "ids.json").read_text())
    (path / "ids.json").write_text(json.dumps(ids[:-1]))
    _rerecord(path, "ids.json")
    with pytest.raises(IndexIntegrityError, match=rf"{path / 'index.faiss'}: holds 300 vectors but "
                                                  rf"{path / 'ids.json'} has 299 ids"):
        MemoryBank.load(path)
    (path / "ids.json").write_text(json.dumps([*ids[:-1], 7]))
    _rerecord(path, "ids.json")
    with pytest.raises(BankError, match=rf"{path / 'ids.json'}: must hold a JSON list of document ids"):
        MemoryBank.load(path)


def test_index_over_the_byte_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faiss_never_reads
) -> None:
    _, path = saved_bank(tmp_path)
    size = (path / "index.faiss").stat().st_size
    read_bytes, hashed = Path.read_bytes, []

    def spy(self: Path) -> bytes:
        hashed.append(self.name)
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    with pytest.raises(IndexIntegrityError, match=rf"index.faiss: index file of {size} bytes exceeds the "
                                                  rf"limit of {size - 1} bytes"):
        MemoryBank.load(path, max_index_bytes=size - 1)
    monkeypatch.setenv("CM3LEON_MAX_INDEX_BYTES", "1000")
    with pytest.raises(IndexIntegrityError, match="exceeds the limit of 1000 bytes; .*CM3LEON_MAX_INDEX_BYTES"):
        MemoryBank.load(path)
    assert "index.faiss" not in hashed  # refused on its size alone: not a byte was read


def test_faiss_vector_limit_is_the_file_size_while_deserialising(tmp_path: Path) -> None:
    """A length field claiming more than the file holds (hash re-recorded) is refused by
    FAISS's deserialisation limit, not read, and the error names the file."""
    import faiss

    _, path = saved_bank(tmp_path)
    index = path / "index.faiss"
    data = bytearray(index.read_bytes())
    assert data[:4] == b"IxFI" and struct.unpack("<Q", data[37:45]) == (300 * 16,)  # flat IP codes
    data[37:45] = struct.pack("<Q", 300 * 16 + 1000)  # 4000 bytes more than the file has
    index.write_bytes(bytes(data))
    _rerecord(path, "index.faiss")
    default = faiss.get_deserialization_vector_byte_limit()
    with pytest.raises(IndexIntegrityError, match=rf"{index}: FAISS cannot deserialise the index: "
                                                  r".*deserialization_vector_byte_limit"):
        MemoryBank.load(path)
    assert faiss.get_deserialization_vector_byte_limit() == default  # restored


# ---------------------------------------------------------- sharded build


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "HNSW16"])
def test_merging_two_rank_shards_equals_one_index(factory: str) -> None:
    vecs = random_unit(1000, 16, seed=4)
    single = make_index(16, factory)
    single.train(vecs)
    shards = []
    for part in (vecs[:600], vecs[600:]):
        import faiss

        shard = faiss.clone_index(single)  # trained, empty
        shard.reset()
        shard.add(part)
        shards.append(shard)
    single.add(vecs)
    merged = merge_indexes(shards)
    assert merged.ntotal == 1000
    if factory == "HNSW16":  # graphs differ; the stored vectors and ids must not
        np.testing.assert_allclose(merged.reconstruct_n(0, 1000), vecs, atol=1e-6)
    else:
        _, a = merged.search(vecs[:100], 10)
        _, b = single.search(vecs[:100], 10)
        np.testing.assert_array_equal(a, b)


def write_document_shards(path: Path, docs: list[Document], size_limit: int = 1 << 26) -> Path:
    from cm3leon.core.shards import DocumentShardWriter

    with DocumentShardWriter(path, size_limit=size_limit) as w:
        for d in docs:
            w.write(d)
    return path


def bank_cfg(tmp_path: Path, shards: Path, factory: str = "Flat", chunk: int = 64) -> BankConfig:
    return BankConfig(output=str(tmp_path / "bank"), data=DocumentsConfig(shards=[str(shards)]),
                      index=IndexConfig(factory=factory, train_size=200), chunk_size=chunk)


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat"])
def test_two_simulated_ranks_build_the_same_bank_as_one(tmp_path: Path, factory: str) -> None:
    docs = shape_documents(300, seed=5)
    shards = write_document_shards(tmp_path / "docs", docs)
    enc = HashEncoder()
    info = {"name": "hash", "fingerprint": enc.fingerprint}
    results = {}
    for world in (1, 2):
        cfg = bank_cfg(tmp_path / f"w{world}", shards, factory)
        layout = build_mod.plan_layout(cfg)
        for rank in range(world):
            build_mod.embed_phase(cfg, enc, layout, rank=rank, world_size=world, progress=False)
        build_mod.train_phase(cfg, enc.dim, layout)
        for rank in range(world):
            build_mod.add_phase(cfg, enc.dim, layout, rank=rank, world_size=world)
        results[world] = MemoryBank.load(build_mod.merge_phase(cfg, layout, world, info))
    one, two = results[1], results[2]
    assert one.ids == two.ids == [d.id for d in docs]
    q = enc.encode_documents(docs[:20]).numpy()
    np.testing.assert_array_equal(one.search(q, 5)[1], two.search(q, 5)[1])
    assert two.documents([0, 150, 299]) == [docs[0], docs[150], docs[299]]
    assert two.manifest.extra["world_size"] == 2


def test_rank_chunk_assignment_covers_everything_once() -> None:
    for n, w in [(5, 2), (10, 3), (1, 2), (7, 7)]:
        covered = [c for r in range(w) for c in build_mod.rank_chunks(n, r, w)]
        assert covered == list(range(n))


def test_interrupted_embedding_resumes_from_complete_chunks(tmp_path: Path) -> None:
    docs = shape_documents(200, seed=6)
    shards = write_document_shards(tmp_path / "docs", docs)
    cfg = bank_cfg(tmp_path, shards, chunk=50)
    enc = HashEncoder()

    class Crash(Exception):
        pass

    class CrashingEncoder(HashEncoder):
        def encode_documents(self, docs, code_decoder=None):
            if self.calls == 2:
                raise Crash
            return super().encode_documents(docs)

    layout = build_mod.plan_layout(cfg)
    with pytest.raises(Crash):
        build_mod.embed_phase(cfg, CrashingEncoder(), layout, progress=False)
    done = [d for d in build_mod.chunk_dirs(cfg, len(layout.chunks)) if (d / "COMPLETE").exists()]
    assert len(done) == 2  # two chunks finished before the crash; no partial chunk left
    assert not any(p.name.endswith(".partial") for p in build_mod.work_dir(cfg).iterdir())
    build_mod.embed_phase(cfg, enc, layout, progress=False)
    assert enc.calls == 2  # only the two missing chunks were embedded again
