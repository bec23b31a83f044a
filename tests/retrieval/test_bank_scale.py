"""A bank that scales: device option, ranks that read only their own shard files,
documents by reference, and the size estimate checked against built indexes."""

from __future__ import annotations

import builtins
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from cm3leon.core.config import ConfigError
from cm3leon.core.shards import ShardIntegrityError
from cm3leon.retrieval import build as build_mod
from cm3leon.retrieval.bank import MemoryBank
from cm3leon.retrieval.config import BankConfig, DocumentsConfig, IndexConfig, resolve_device
from cm3leon.retrieval.estimate import estimate_bank, index_size
from cm3leon.retrieval.sources import SourceError
from cm3leon.retrieval.store import DOCUMENTS_FILE, REFS_FILE
from tests.retrieval.synthetic import shape_documents
from tests.retrieval.test_bank import HashEncoder, random_unit, text_docs, write_document_shards

SMALL_SHARDS = 5000  # bytes per MDS shard file: about a dozen shape documents each


@pytest.fixture()
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ------------------------------------------------------------------ device
def test_device_auto_is_cpu_without_cuda_and_cuda_is_refused_by_key(no_cuda) -> None:
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match=r"bank\.device: 'cuda' requested but CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"bank\.device: must be one of auto, cpu, cuda, got 'gpu'"):
        resolve_device("gpu")


def test_build_refuses_cuda_without_cuda_before_reading_anything(no_cuda, tmp_path: Path,
                                                                  tiny_encoder_dir: Path) -> None:
    cfg = BankConfig(output=str(tmp_path / "bank"), data=DocumentsConfig(shards=[str(tmp_path / "nowhere")]),
                     encoder=str(tiny_encoder_dir), device="cuda")
    with pytest.raises(ConfigError, match=r"bank\.device"):
        build_mod.build_bank(cfg, progress=False)
    assert not (tmp_path / "bank.work").exists()


def test_auto_device_embeds_on_cpu_with_the_same_vectors(no_cuda, tmp_path: Path, tiny_encoder,
                                                          tiny_encoder_dir: Path, caplog) -> None:
    docs = shape_documents(40, seed=61)
    shards = write_document_shards(tmp_path / "docs", docs, size_limit=SMALL_SHARDS)
    cfg = BankConfig(output=str(tmp_path / "bank"), data=DocumentsConfig(shards=[str(shards)]),
                     encoder=str(tiny_encoder_dir), chunk_size=16)
    assert cfg.device == "auto"
    with caplog.at_level(logging.INFO, logger="cm3leon.retrieval.build"):
        bank = MemoryBank.load(build_mod.build_bank(cfg, progress=False))
    said = [r.getMessage() for r in caplog.records if "embedding on" in r.getMessage()]
    assert said == ["rank 0: embedding on cpu (bank.device=auto)"]
    # the encoder as loaded before the option (on the CPU by default), over the same chunks
    chunks = build_mod.plan_layout(cfg).chunks
    expected = np.concatenate([tiny_encoder.encode_documents(docs[c.start:c.stop]).numpy() for c in chunks])
    np.testing.assert_array_equal(bank.vectors(np.arange(40)), expected)


# ------------------------------------------------- ranks read their own shards
class OpenedShards:
    """Records every MDS shard file opened (by FAISS-free Python code: hashing, MDS reads)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: set[str] = set()
        real = builtins.open

        def tracking_open(file, *args, **kwargs):
            if str(file).endswith(".mds"):
                self.files.add(Path(file).name)
            return real(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", tracking_open)


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_opens_only_its_shard_files_and_the_bank_equals_one_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: int) -> None:
    docs = shape_documents(90, seed=62)
    shards = write_document_shards(tmp_path / "docs", docs, size_limit=SMALL_SHARDS)
    all_files = sorted(p.name for p in shards.glob("*.mds"))
    assert len(all_files) >= 5
    enc = HashEncoder()
    info = {"name": "hash", "fingerprint": enc.fingerprint}
    banks, opened = {}, {}
    for w in (1, world):
        cfg = BankConfig(output=str(tmp_path / f"bank{w}"), data=DocumentsConfig(shards=[str(shards)]),
                         index=IndexConfig(factory="IVF4,Flat", train_size=60), chunk_size=7)
        layout = build_mod.plan_layout(cfg)
        for rank in range(w):
            with monkeypatch.context() as m:
                seen = OpenedShards(m)
                read = build_mod.embed_phase(cfg, enc, layout, rank=rank, world_size=w, progress=False)
            opened[w, rank] = seen.files
            assert {Path(f).name for f in read} == seen.files
        with monkeypatch.context() as m:
            seen = OpenedShards(m)  # training, adding and merging read no source shard
            build_mod.train_phase(cfg, enc.dim, layout)
            for rank in range(w):
                build_mod.add_phase(cfg, enc.dim, layout, rank=rank, world_size=w)
            banks[w] = MemoryBank.load(build_mod.merge_phase(cfg, layout, w, info))
        assert seen.files == set()
    per_rank = [opened[world, r] for r in range(world)]
    assert all(per_rank), per_rank  # every rank had work
    assert sorted(f for files in per_rank for f in files) == all_files  # each file read by exactly one rank
    one, many = banks[1], banks[world]
    assert one.ids == many.ids == [d.id for d in docs]
    np.testing.assert_array_equal(one.vectors(np.arange(90)), many.vectors(np.arange(90)))
    q = one.vectors(np.arange(0, 90, 9))
    np.testing.assert_array_equal(one.search(q, 5)[1], many.search(q, 5)[1])
    assert many.documents(range(90)) == docs


def test_a_corrupt_shard_fails_only_the_rank_that_owns_it(tmp_path: Path) -> None:
    docs = shape_documents(60, seed=63)
    shards = write_document_shards(tmp_path / "docs", docs, size_limit=SMALL_SHARDS)
    cfg = BankConfig(output=str(tmp_path / "bank"), data=DocumentsConfig(shards=[str(shards)]), chunk_size=8)
    layout = build_mod.plan_layout(cfg)
    owners = build_mod.shard_owners(layout.shards, 2)
    last = layout.shards[-1].file  # owned by rank 1
    assert owners[-1] == 1 and owners[0] == 0
    data = bytearray(last.read_bytes())
    data[-3] ^= 0xFF
    last.write_bytes(bytes(data))
    build_mod.embed_phase(cfg, HashEncoder(), layout, rank=0, world_size=2, progress=False)  # never opens it
    with pytest.raises(ShardIntegrityError, match=rf"{last}: SHA-256 mismatch"):
        build_mod.embed_phase(cfg, HashEncoder(), layout, rank=1, world_size=2, progress=False)


# ------------------------------------------------------- documents by reference
def _built(tmp_path: Path, docs, *, name: str = "bank") -> tuple[Path, Path]:
    shards = write_document_shards(tmp_path / f"{name}-docs", docs, size_limit=SMALL_SHARDS)
    cfg = BankConfig(output=str(tmp_path / name), data=DocumentsConfig(shards=[str(shards)]), chunk_size=10)
    layout = build_mod.plan_layout(cfg)
    enc = HashEncoder()
    build_mod.embed_phase(cfg, enc, layout, progress=False)
    build_mod.add_phase(cfg, enc.dim, layout)
    return build_mod.merge_phase(cfg, layout, 1, {"name": "hash", "fingerprint": enc.fingerprint}), shards


def test_documents_are_references_fetched_from_the_shards(tmp_path: Path) -> None:
    docs = shape_documents(50, seed=64)
    bank_dir, shards = _built(tmp_path, docs)
    assert not (bank_dir / DOCUMENTS_FILE).exists()
    assert (bank_dir / REFS_FILE).stat().st_size == 128 + 16 * 50  # no document copy, no PNG
    manifest = json.loads((bank_dir / "manifest.json").read_text())
    [source] = manifest["documents"]["sources"]
    assert manifest["documents"]["kind"] == "shards" and source["path"] == str(shards.resolve())
    bank = MemoryBank.load(bank_dir)
    assert bank.documents([49, 0, 23]) == [docs[49], docs[0], docs[23]]


def test_a_missing_or_changed_source_is_named(tmp_path: Path) -> None:
    docs = shape_documents(30, seed=65)
    bank_dir, shards = _built(tmp_path, docs)
    moved = shards.rename(tmp_path / "moved")
    with pytest.raises(SourceError, match=rf"{bank_dir}: its documents live in {shards.resolve()}, which is missing"):
        MemoryBank.load(bank_dir)
    moved.rename(shards)
    write_document_shards(tmp_path / "other", shape_documents(30, seed=66), size_limit=SMALL_SHARDS).rename(
        tmp_path / "other2")
    import shutil

    shutil.rmtree(shards)
    (tmp_path / "other2").rename(shards)  # same path, other documents
    with pytest.raises(SourceError, match=rf"document source {shards.resolve()} changed since the bank was built"):
        MemoryBank.load(bank_dir)


def test_a_tampered_source_shard_is_refused_when_fetched(tmp_path: Path) -> None:
    docs = shape_documents(30, seed=67)
    bank_dir, shards = _built(tmp_path, docs)
    first = sorted(shards.glob("*.mds"))[0]
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF
    first.write_bytes(bytes(data))
    bank = MemoryBank.load(bank_dir)  # the index.json pin still holds; the shard is checked on first use
    with pytest.raises(ShardIntegrityError, match=rf"{first}: SHA-256 mismatch"):
        bank.documents([0])


def test_format_1_banks_with_document_copies_still_load(tmp_path: Path) -> None:
    docs = text_docs(20)
    MemoryBank.build(random_unit(20, 8), docs).save(tmp_path / "old")
    path = tmp_path / "old" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest.pop("documents") == {"kind": "jsonl"}
    manifest["format"] = 1
    path.write_text(json.dumps(manifest))
    bank = MemoryBank.load(tmp_path / "old")
    assert bank.documents([3, 19]) == [docs[3], docs[19]]


# ------------------------------------------------------------------ estimate
@pytest.mark.parametrize("factory", ["Flat", "IVF8,PQ4x4", "HNSW16"])
def test_index_estimate_matches_built_index_files(tmp_path: Path, factory: str) -> None:
    """Within 1 %: exact for flat codes and IVF lists; HNSW's upper-level links are random."""
    n, d = 2000, 32
    bank = MemoryBank.build(random_unit(n, d, seed=8), text_docs(n), factory=factory, train_size=2000)
    real = (bank.save(tmp_path / "b") / "index.faiss").stat().st_size
    est = index_size(d, factory).bytes(n)
    assert abs(est - real) <= 0.01 * real, (est, real)


def test_bank_estimate_matches_a_built_bank_by_reference(tmp_path: Path) -> None:
    docs = shape_documents(50, seed=68)
    bank_dir, _ = _built(tmp_path, docs)
    est = estimate_bank(50, HashEncoder.dim, "Flat", id_chars=len(docs[0].id), chunk_size=10)
    assert est.index_bytes == (bank_dir / "index.faiss").stat().st_size
    assert est.refs_bytes == (bank_dir / REFS_FILE).stat().st_size
    assert abs(est.ids_bytes - (bank_dir / "ids.json").stat().st_size) <= 4
    assert est.vectors_bytes == 50 * HashEncoder.dim * 4
    assert set(est.peak_ram) == {"embed", "train", "add", "merge", "load"} and est.peak_ram["train"] == 0


def test_estimate_at_scale_has_the_textbook_sizes() -> None:
    n, d = 100_000_000, 512
    flat = estimate_bank(n, d, "Flat")
    assert flat.index.per_vector == 4 * d and flat.refs_bytes == 128 + 16 * n
    pq = estimate_bank(n, d, "IVF65536,PQ64")
    assert pq.index.per_vector == 64 + 8 + 8  # PQ64 code + id + direct map
    assert pq.index.fixed >= 65536 * d * 4  # the coarse quantizer's centroids
    hnsw = estimate_bank(n, d, "HNSW32")
    assert 4 * d + 4 * 64 < hnsw.index.per_vector < 4 * d + 4 * 66 + 12.5
    assert "index.faiss" in pq.render() and "peak RAM while building" in pq.render()


# ---------------------------------------------------------------------- CLI
def _cli(*args: str):
    from click.testing import CliRunner

    from cm3leon.core.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_estimate_command_and_build_prints_it_first(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    shards = write_document_shards(tmp_path / "docs", shape_documents(30, seed=69), size_limit=SMALL_SHARDS)
    cfg = tmp_path / "bank.yaml"
    cfg.write_text(f"bank:\n  output: {tmp_path / 'bank'}\n  data: {{shards: [{shards}]}}\n"
                   f"  encoder: {tiny_encoder_dir}\n  chunk_size: 10\n")
    res = _cli("retrieval", "estimate", str(cfg), "--documents", "1000", "--dim", "64", "--json")
    assert res.exit_code == 0, res.output
    est = json.loads(res.stdout)
    assert est["index_bytes"] == index_size(64, "Flat").bytes(1000) and est["refs_bytes"] == 128 + 16 * 1000
    res = _cli("retrieval", "estimate", str(cfg), "bank.index.factory=HNSW8")  # documents + dim from the config
    assert res.exit_code == 0 and "30 documents x 32 dims, factory 'HNSW8'" in res.stdout
    res = _cli("retrieval", "estimate", str(cfg), "bank.encoder=", "--documents", "5")
    assert res.exit_code != 0 and "bank.encoder: (unset) has no open_clip_config.json" in res.output
    res = _cli("retrieval", "build", str(cfg), "--no-progress")
    assert res.exit_code == 0, res.output
    assert res.stderr.index("bank estimate: 30 documents x 32 dims") < len(res.stderr)
    real = (tmp_path / "bank" / "index.faiss").stat().st_size
    assert f"{real / 1024:.1f} KiB" in res.stderr  # the printed index size is the built one (Flat)


def test_verify_documents_false_skips_only_the_shard_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cm3leon.core.io as core_io

    docs = shape_documents(30, seed=70)
    bank_dir, _ = _built(tmp_path, docs)
    hashed: list[str] = []
    real = core_io.sha256_file

    def counting(path, **kw):
        hashed.append(Path(path).name)
        return real(path, **kw)

    monkeypatch.setattr(core_io, "sha256_file", counting)
    for verify in (True, False):
        hashed.clear()
        bank = MemoryBank.load(bank_dir, verify_documents=verify)
        assert bank.documents([0, 29]) == [docs[0], docs[29]]
        assert any(name.endswith(".mds") for name in hashed) is verify
        assert "index.json" in hashed  # the source pin is always checked
