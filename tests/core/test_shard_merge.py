"""Datasets written in parts merge into one that reads like a single writer's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cm3leon.core.documents import Document
from cm3leon.core.shard_merge import merge_datasets, merge_stats
from cm3leon.core.shards import (
    DocumentShardWriter,
    ShardIntegrityError,
    TokenShardWriter,
    iter_samples,
    iter_token_samples,
    verify_dataset,
)
from cm3leon.core.vocab import Vocabulary

VOCAB = Vocabulary(text_size=40, image_size=16)


def _docs(n: int, start: int = 0) -> list[Document]:
    return [Document.of(f"caption number {i} " * 3, id=f"d{i}") for i in range(start, start + n)]


def _write_docs(out: Path, docs: list[Document], size_limit: int = 1 << 26) -> Path:
    with DocumentShardWriter(out, size_limit=size_limit) as w:
        for d in docs:
            w.write(d)
    return out


def _write_tokens(out: Path, rows: list[np.ndarray], start: int) -> Path:
    with TokenShardWriter(out, VOCAB, size_limit=256) as w:
        for i, row in enumerate(rows):
            w.write(row, id=f"t{start + i}")
    return out


def test_parts_merge_to_the_single_writer_dataset(tmp_path: Path) -> None:
    docs = _docs(23)
    whole = _write_docs(tmp_path / "whole", docs)
    parts = [_write_docs(tmp_path / f"p{i}", docs[a:b], size_limit=400)
             for i, (a, b) in enumerate([(0, 10), (10, 11), (11, 23)])]
    merged = merge_datasets(parts, tmp_path / "merged", meta={"from": "test"})
    assert merged.num_samples == 23 and merged.meta == {"from": "test"} and len(merged.shards) > 3
    assert [s for _, s in iter_samples(tmp_path / "merged")] == [s for _, s in iter_samples(whole)]
    assert merged.stats == verify_dataset(whole).stats
    assert all((tmp_path / "merged" / s["raw_data"]["basename"]).is_file() for s in merged.shards)
    assert verify_dataset(parts[0]).num_samples == 10  # parts are left in place


def test_token_parts_keep_vocabulary_and_length_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [VOCAB.text_to_global(rng.integers(0, 40, size=int(n))) for n in rng.integers(3, 30, size=12)]
    parts = [_write_tokens(tmp_path / "a", rows[:5], 0), _write_tokens(tmp_path / "b", rows[5:], 5)]
    info = merge_datasets(parts, tmp_path / "m")
    got = list(iter_token_samples(tmp_path / "m"))
    assert [s.id for s in got] == [f"t{i}" for i in range(12)]
    for sample, row in zip(got, rows, strict=True):
        np.testing.assert_array_equal(sample.tokens, row)
    lengths = [len(r) for r in rows]
    assert info.stats["tokens"] == sum(lengths)
    assert (info.stats["min_length"], info.stats["max_length"]) == (min(lengths), max(lengths))
    assert info.vocab == VOCAB


def test_an_incomplete_or_damaged_part_writes_nothing(tmp_path: Path) -> None:
    a = _write_docs(tmp_path / "a", _docs(4))
    b = _write_docs(tmp_path / "b", _docs(4, start=4))
    (b / "COMPLETE").unlink()
    with pytest.raises(ShardIntegrityError, match="no COMPLETE marker"):
        merge_datasets([a, b], tmp_path / "m")
    assert not (tmp_path / "m").exists()
    c = _write_docs(tmp_path / "c", _docs(4, start=8))
    shard = c / "shard.00000.mds"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    merge_datasets([a, c], tmp_path / "unchecked")  # sizes match: only the hash check sees it
    with pytest.raises(ShardIntegrityError, match="SHA-256 mismatch"):
        merge_datasets([a, c], tmp_path / "m", verify=True)
    assert not (tmp_path / "m").exists()


def test_parts_of_different_schemas_are_refused_naming_the_part(tmp_path: Path) -> None:
    a = _write_docs(tmp_path / "a", _docs(3))
    b = _write_tokens(tmp_path / "b", [VOCAB.text_to_global([1, 2, 3])], 0)
    with pytest.raises(ValueError, match=r"b: its kind differs"):
        merge_datasets([a, b], tmp_path / "m")
    with pytest.raises(ValueError, match="no parts"):
        merge_datasets([], tmp_path / "m")
    with pytest.raises(FileExistsError):
        merge_datasets([a], tmp_path / "a")


def test_merge_stats_rules() -> None:
    got = merge_stats([{"tokens": 3, "min_length": 2, "max_length": 9, "name": "x"},
                       {"tokens": 4, "min_length": 1, "max_length": 5, "name": "y", "extra": 1}])
    assert got == {"tokens": 7, "min_length": 1, "max_length": 9, "extra": 1}


def test_a_link_never_replaces_an_existing_shard(tmp_path: Path) -> None:
    """The copy fallback is for file systems without hard links, not for a taken name: a
    part whose shard would land on an existing file is an error, never a silent overwrite."""
    import errno as errno_mod

    from cm3leon.core.shard_merge import _link

    src, dst = tmp_path / "a.mds", tmp_path / "b.mds"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    with pytest.raises(OSError, match="cannot link") as info:
        _link(src, dst)
    assert info.value.errno == errno_mod.EEXIST and dst.read_bytes() == b"old"
    fresh = tmp_path / "c.mds"
    _link(src, fresh)
    assert fresh.stat().st_ino == src.stat().st_ino
