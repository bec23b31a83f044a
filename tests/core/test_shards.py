"""MDS shards: round trips, integrity checks naming the file, atomic writes, StreamingDataset readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cm3leon.core.documents import Document, ImageSegment
from cm3leon.core.io import COMPLETE_MARKER, atomic_write_json, sha256_file
from cm3leon.core.objective import CM3Config, cm3_example, cm3_inverse
from cm3leon.core.packing import raw_samples_in_batch
from cm3leon.core.shards import (
    INDEX_FILE,
    MANIFEST_FILE,
    DocumentShardWriter,
    ShardIntegrityError,
    TokenShardWriter,
    iter_documents,
    iter_token_samples,
    parse_index,
    read_manifest,
    verify_dataset,
)
from cm3leon.core.vocab import Vocabulary

VOCAB = Vocabulary(text_size=256, image_size=16, num_sentinels=4)
N = 40


def example(i: int) -> np.ndarray:
    text = VOCAB.text_to_global((np.arange(4 + i % 5) + i) % 256)
    image = VOCAB.image_to_global(np.arange(4) + i % 8)
    return np.concatenate([[VOCAB.eos_id], text, [VOCAB.break_id], image, [VOCAB.break_id]]).astype(np.int64)


def write_tokens(path: Path, *, weights: bool = False, n: int = N) -> Path:
    with TokenShardWriter(path, VOCAB, with_loss_weights=weights, size_limit=600, meta={"test": 1}) as w:
        for i in range(n):
            ids = example(i)
            w.write(ids, id=f"s{i}", loss_weights=np.full(ids.size, 1 + i % 2, np.float32) if weights else None)
    return path


def shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("shard.*.mds"))


def flip_byte(path: Path, offset: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------- round trips
def test_document_shards_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs = [
        Document.of(f"caption {i}", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), id=f"d{i}", meta={"i": i})
        for i in range(5)
    ] + [Document.of("codes only", ImageSegment(codes=(1, 2, 3, 4)), id="codes")]
    with DocumentShardWriter(tmp_path / "docs") as w:
        for doc in docs:
            w.write(doc)
    info = verify_dataset(tmp_path / "docs")
    assert info.kind == "documents" and info.num_samples == 6 and info.stats == {"images": 6, "text_segments": 6}
    assert list(iter_documents(tmp_path / "docs")) == docs
    assert (tmp_path / "docs" / COMPLETE_MARKER).is_file()


def test_token_shards_round_trip_with_weights_and_stats(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok", weights=True)
    info = verify_dataset(path)
    assert info.vocab == VOCAB and info.num_samples == N and len(info.shards) > 3
    assert info.meta == {"test": 1}
    samples = list(iter_token_samples(path))
    assert [s.id for s in samples] == [f"s{i}" for i in range(N)]
    for i, s in enumerate(samples):
        assert np.array_equal(s.tokens, example(i)) and s.loss_weights is not None
        assert s.loss_weights[0] == 1 + i % 2
    lengths = [example(i).size for i in range(N)]
    assert info.stats["tokens"] == sum(lengths) and info.stats["image_tokens"] == 4 * N
    assert info.stats["text_tokens"] == sum(4 + i % 5 for i in range(N))
    assert (info.stats["min_length"], info.stats["max_length"]) == (min(lengths), max(lengths))
    index = json.loads((path / INDEX_FILE).read_text())
    assert all("sha256" in s["raw_data"]["hashes"] for s in index["shards"])  # for validate_hash


def target_of(i: int) -> np.ndarray:
    """The text run of example ``i`` (its "answer"): tokens [1, 1 + 4 + i % 5)."""
    return np.array([[1, 1 + 4 + i % 5]]) if i % 3 else np.zeros((0, 2), np.int64)


def write_targets(path: Path) -> Path:
    with TokenShardWriter(path, VOCAB, with_targets=True, size_limit=600) as w:
        for i in range(N):
            w.write(example(i), id=f"s{i}", targets=target_of(i))
    return path


def test_token_shards_carry_task_targets_and_old_shards_read_without(tmp_path: Path) -> None:
    path = write_targets(tmp_path / "sft")
    info = verify_dataset(path)
    assert info.columns["targets"] == "json"
    assert info.stats["samples_with_targets"] == sum(bool(i % 3) for i in range(N))
    for i, s in enumerate(iter_token_samples(path)):
        assert np.array_equal(s.targets, target_of(i)) and s.targets.shape[1] == 2
    old = write_tokens(tmp_path / "old")  # no targets column: reads as before
    assert "targets" not in verify_dataset(old).columns
    assert all(s.targets is None for s in iter_token_samples(old))


def test_bad_targets_are_refused_on_write_naming_the_sample(tmp_path: Path) -> None:
    bad = [([[0, 3]], "holds a special token"), ([[4, 2]], "empty, out of order"),
           ([[1, 99]], "outside"), ([[1.5, 3]], "integer")]  # fmt: skip
    for targets, message in bad:
        with pytest.raises(ValueError, match=f"token sample 'x': .*{message}"), \
                TokenShardWriter(tmp_path / "t", VOCAB, with_targets=True) as w:  # fmt: skip
            w.write(example(0), id="x", targets=np.array(targets))
    with pytest.raises(ValueError, match="with_targets=False"), TokenShardWriter(tmp_path / "t", VOCAB) as w:
        w.write(example(0), id="x", targets=np.array([[1, 3]]))
    assert not (tmp_path / "t").exists()


def test_streaming_reader_masks_the_stored_targets(tmp_path: Path) -> None:
    from cm3leon.core.shard_datasets import CM3StreamingDataset

    path = write_targets(tmp_path / "sft")
    ds = CM3StreamingDataset(local=str(path), batch_size=4, cm3=CM3Config(target_prob=1.0), cm3_seed=3)
    for i in range(N):
        tokens = ds[i]["tokens"]
        assert np.array_equal(cm3_inverse(tokens, VOCAB), example(i))
        if i % 3:  # the text run was masked exactly and moved behind <infill:0>
            (s, e), = target_of(i).tolist()
            assert tokens[1] == VOCAB.mask_id(0) and tokens[-(e - s) - 1] == VOCAB.infill_id(0)
            assert np.array_equal(tokens[-(e - s):], example(i)[s:e])
        else:  # no targets: the usual random spans
            expected = cm3_example(example(i), VOCAB, CM3Config(target_prob=1.0), seed=3, epoch=0, index=i)
            assert np.array_equal(tokens, expected.tokens)


# ------------------------------------------------------------- atomic writes
def test_failed_conversion_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "tok"
    with pytest.raises(RuntimeError, match="boom"), TokenShardWriter(out, VOCAB, size_limit=200) as w:
        for i in range(10):
            w.write(example(i), id=f"s{i}")
        raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no samples were written"), DocumentShardWriter(out):
        pass
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        verify_dataset(out)


@pytest.mark.integration
def test_killed_conversion_is_never_accepted(tmp_path: Path) -> None:
    script = f"""
import os, signal, numpy as np
from cm3leon.core.shards import TokenShardWriter
from cm3leon.core.vocab import Vocabulary
v = Vocabulary(text_size=256, image_size=16, num_sentinels=4)
with TokenShardWriter({str(tmp_path / 'tok')!r}, v, size_limit=200) as w:
    for i in range(50):
        w.write(np.array([1, 30 + i, 31, 32]), id=str(i))
        if i == 30:
            os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not (tmp_path / "tok").exists()
    # The temporary sibling the writer was filling, and the dead writer's lock file (which
    # the next writer reports as stale and takes over; tests/core/test_locks.py).
    partial, lock = sorted(tmp_path.iterdir(), key=lambda p: p.name.endswith(".lock"))
    assert lock.name == ".tok.lock" and json.loads(lock.read_text())["pid"] not in (None, os.getpid())
    assert partial.name.startswith(".tok.") and shard_files(partial)
    with pytest.raises(ShardIntegrityError, match="no COMPLETE marker"):
        verify_dataset(partial)


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok", n=3)
    with pytest.raises(FileExistsError, match="already exists"):
        write_tokens(path, n=2)
    with TokenShardWriter(path, VOCAB, overwrite=True) as w:
        w.write(example(0), id="only")
    assert verify_dataset(path).num_samples == 1


# ----------------------------------------------------------------- bad input
def test_out_of_range_ids_and_duplicates_rejected_on_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"token sample 'bad': token id {VOCAB.size} at position 1"), \
            TokenShardWriter(tmp_path / "a", VOCAB) as w:
        w.write(np.array([1, VOCAB.size]), id="bad")
    with pytest.raises(ValueError, match="duplicate sample id 'x'"), TokenShardWriter(tmp_path / "b", VOCAB) as w:
        w.write(example(0), id="x")
        w.write(example(1), id="x")
    with pytest.raises(ValueError, match="document 'e' is empty"), DocumentShardWriter(tmp_path / "c") as dw:
        dw.write(Document.of("  ", id="e"))
    assert list(tmp_path.iterdir()) == []


def test_truncated_shard_names_the_file(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok")
    shard = shard_files(path)[2]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ShardIntegrityError, match=rf"{shard.name}: truncated"):
        verify_dataset(path)
    with pytest.raises(ShardIntegrityError, match=rf"{shard.name}: truncated"):
        list(iter_token_samples(path))


def test_flipped_byte_fails_the_hash_check(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok")
    shard = shard_files(path)[1]
    flip_byte(shard)
    with pytest.raises(ShardIntegrityError, match=rf"{shard.name}: SHA-256 mismatch"):
        verify_dataset(path)
    verify_dataset(path, check_hashes=False)  # same size: only the hash can tell


def test_corrupt_or_truncated_index_names_the_file(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok")
    index = path / INDEX_FILE
    original = index.read_bytes()
    index.write_bytes(original[: len(original) // 2])
    with pytest.raises(ShardIntegrityError, match=rf"{INDEX_FILE}: truncated"):
        verify_dataset(path)
    index.write_bytes(original.replace(b'"samples"', b'"sampl"s"'))
    with pytest.raises(ShardIntegrityError, match=rf"{INDEX_FILE}: .*(SHA-256 mismatch|extra bytes)"):
        verify_dataset(path)
    # Even with consistent hashes, a non-JSON index is reported by name before anything reads it.
    with pytest.raises(ShardIntegrityError, match=rf"{INDEX_FILE}: corrupt or truncated index.json"):
        parse_index(index, read_manifest(path))


def test_missing_marker_and_tampered_manifest(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok", n=4)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["num_samples"] = 3
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ShardIntegrityError, match=rf"{MANIFEST_FILE}: SHA-256 does not match the COMPLETE"):
        verify_dataset(path)
    (path / COMPLETE_MARKER).unlink()
    with pytest.raises(ShardIntegrityError, match="no COMPLETE marker"):
        verify_dataset(path)


# ------------------------------------------------------- StreamingDataset
def _loader(path: Path, num_workers: int = 0):
    from cm3leon.core.shard_datasets import CM3StreamingDataset, build_packed_dataloader

    ds = CM3StreamingDataset(local=str(path), batch_size=4, shuffle=True, shuffle_seed=5,
                             cm3=CM3Config(), cm3_seed=11)
    return ds, build_packed_dataloader(ds, seq_len=48, num_workers=num_workers)


def _write_raw_mds(path: Path, columns: dict[str, str]) -> Path:
    """An MDS dataset with cm3leon's manifest and marker but ``columns`` of the writer's choosing
    (a third-party tool), every hash recorded correctly."""
    from streaming.base.format.mds.writer import MDSWriter

    with MDSWriter(columns=columns, out=str(path), hashes=["sha256"]) as w:
        for i in range(4):
            w.write({"id": f"s{i}", "tokens": example(i).astype(np.int32), "modality_counts": np.zeros(3, np.int32)})
    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(path.iterdir())}
    atomic_write_json(path / MANIFEST_FILE, {"format": "cm3leon-mds", "version": 1, "kind": "tokens",
                                             "num_samples": 4, "columns": columns, "vocab": VOCAB.to_dict(),
                                             "stats": {}, "meta": {}, "files": files})
    atomic_write_json(path / COMPLETE_MARKER, {"manifest_sha256": sha256_file(path / MANIFEST_FILE)})
    return path


def test_pkl_column_is_refused_before_any_sample_is_decoded(tmp_path: Path) -> None:
    """MDS's ``pkl`` encoding unpickles on read; no cm3leon schema has it, whoever wrote the data."""
    from cm3leon.core.shard_datasets import CM3StreamingDataset

    path = _write_raw_mds(tmp_path / "pkl", {"id": "str", "tokens": "pkl", "modality_counts": "ndarray:int32:3"})
    manifest = path / MANIFEST_FILE
    with pytest.raises(ShardIntegrityError, match=rf"{manifest}: columns .* \(unsafe pkl encoding in \['tokens'\]"):
        verify_dataset(path)
    with pytest.raises(ShardIntegrityError, match="unsafe pkl encoding"):
        CM3StreamingDataset(local=str(path), batch_size=2)
    good = write_tokens(tmp_path / "good")
    with pytest.raises(ValueError, match="allow_unsafe_types=True is refused"):
        CM3StreamingDataset(local=str(good), batch_size=2, allow_unsafe_types=True)


def test_index_columns_must_match_the_manifest(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok")
    index = json.loads((path / INDEX_FILE).read_text())
    index["shards"][1]["column_encodings"][index["shards"][1]["column_names"].index("tokens")] = "pkl"
    (path / INDEX_FILE).write_text(json.dumps(index))
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["files"][INDEX_FILE] = {"sha256": sha256_file(path / INDEX_FILE), "bytes": (path / INDEX_FILE).stat().st_size}
    atomic_write_json(path / MANIFEST_FILE, manifest)
    atomic_write_json(path / COMPLETE_MARKER, {"manifest_sha256": sha256_file(path / MANIFEST_FILE)})
    with pytest.raises(ShardIntegrityError, match=rf"{path / INDEX_FILE}: shard 'shard.00001.mds' has columns"):
        verify_dataset(path)


def test_streaming_reader_transforms_packs_and_resumes_exactly(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok")
    ds, loader = _loader(path)
    full = [b["input_ids"].clone() for b in loader]
    assert sum(b.shape[0] for b in full) >= N * example(0).size // 48
    # Every sample is consumed once per epoch, CM3-transformed and invertible.
    assert sum(raw_samples_in_batch(b) for b in loader) == N
    for i in range(N):
        tokens = ds[i]["tokens"]
        assert np.asarray(VOCAB.is_sentinel(tokens)).any()
        assert np.array_equal(cm3_inverse(tokens, VOCAB), example(i))
    # Interrupted run: 3 steps, save the StreamingDataLoader-compatible state, resume fresh.
    _, partial = _loader(path)
    for step, _batch in enumerate(partial):
        if step == 2:
            state = partial.state_dict()
            break
    assert state["sample_in_epoch"] == 12
    _, resumed = _loader(path)
    resumed.load_state_dict(state)
    rest = [b["input_ids"] for b in resumed]
    assert len(rest) == len(full) - 3
    for a, b in zip(rest, full[3:], strict=True):
        assert torch.equal(a, b)


def test_cm3_spans_are_redrawn_per_epoch(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok")
    ds, loader = _loader(path)
    epochs = []
    for _ in range(2):
        epochs.append(torch.cat([b["input_ids"] for b in loader]))
        assert ds.current_epoch == len(epochs) - 1
    assert not torch.equal(epochs[0], epochs[1])
    # Sample i of epoch e is exactly cm3_example(seed, e, i), whoever reads it.
    fresh, _ = _loader(path)
    for reader, epoch in ((fresh, 0), (ds, 1)):
        expected = cm3_example(example(7), VOCAB, CM3Config(), seed=11, epoch=epoch, index=7).tokens
        assert np.array_equal(reader[7]["tokens"], expected)


def test_remote_with_local_cache_and_corrupt_shards(tmp_path: Path) -> None:
    from cm3leon.core.shard_datasets import CM3StreamingDataset, DocumentStreamingDataset

    remote = write_tokens(tmp_path / "remote")
    with pytest.raises(ValueError, match="holds tokens shards, expected documents"):
        DocumentStreamingDataset(local=str(remote), batch_size=4)
    ds = CM3StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=4, cm3=None)
    items = [ds[i] for i in range(N)]
    assert [it["id"] for it in items] == [f"s{i}" for i in range(N)]
    assert all(np.array_equal(it["tokens"], example(i)) for i, it in enumerate(items))
    # A flipped byte in a shard already in the cache is caught when the dataset is opened.
    cached = shard_files(tmp_path / "cache")[0]
    flip_byte(cached)
    with pytest.raises(ShardIntegrityError, match=rf"{cached}: SHA-256 mismatch"):
        CM3StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=4)
    # A shard that goes bad at the remote after opening is caught when it is downloaded,
    # naming the cached file and where it came from (an object store is checked only then).
    ds2 = CM3StreamingDataset(remote=str(remote), local=str(tmp_path / "cache2"), batch_size=4)
    flip_byte(shard_files(remote)[3])
    cached = tmp_path / "cache2" / "shard.00003.mds"
    with pytest.raises(ShardIntegrityError, match=rf"{cached}: SHA-256 mismatch \(downloaded from "
                                                  rf"{remote / 'shard.00003.mds'}\)"):
        list(ds2)


def test_corrupt_shard_in_a_directory_remote_is_named_when_opening(tmp_path: Path) -> None:
    """A remote readable in place (a directory) is checked before any sample is read."""
    from cm3leon.core.shard_datasets import CM3StreamingDataset

    remote = write_tokens(tmp_path / "remote")
    shard = shard_files(remote)[3]
    flip_byte(shard)
    with pytest.raises(ShardIntegrityError, match=rf"{shard}: SHA-256 mismatch"):
        CM3StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=4)
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ShardIntegrityError, match=rf"{shard}: truncated"):
        CM3StreamingDataset(remote=str(remote), local=str(tmp_path / "cache"), batch_size=4,
                            check_hashes=False)


def test_document_streaming_dataset(tmp_path: Path) -> None:
    from cm3leon.core.shard_datasets import DocumentStreamingDataset

    docs = [Document.of(f"c{i}", ImageSegment(codes=(i, 1, 2, 3)), id=f"d{i}") for i in range(6)]
    with DocumentShardWriter(tmp_path / "docs") as w:
        for d in docs:
            w.write(d)
    ds = DocumentStreamingDataset(local=str(tmp_path / "docs"), batch_size=2)
    assert [ds[i]["document"] for i in range(6)] == docs
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=list)
    assert sorted(item["id"] for batch in loader for item in batch) == sorted(d.id for d in docs)


def test_reader_range_checks_ids_against_the_manifest_vocabulary(tmp_path: Path) -> None:
    from cm3leon.core.shard_datasets import CM3StreamingDataset

    path = write_tokens(tmp_path / "tok", n=4)
    # Re-label the dataset with a smaller image codebook (consistently hashed): ids overflow.
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["vocab"]["image_size"] = 2
    atomic_write_json(path / MANIFEST_FILE, manifest)
    atomic_write_json(path / COMPLETE_MARKER, {"manifest_sha256": sha256_file(path / MANIFEST_FILE)})
    ds = CM3StreamingDataset(local=str(path), batch_size=2, cm3=CM3Config())
    with pytest.raises(ValueError, match=r"sample 1 \(id 's1'\): token id \d+ at position \d+ out of range"):
        ds[1]
    with pytest.raises(ValueError, match=r"sample 0 \(id 's0'\): token id"):
        list(iter_token_samples(path))


def test_streams_must_share_a_vocabulary(tmp_path: Path) -> None:
    from streaming import Stream

    from cm3leon.core.shard_datasets import CM3StreamingDataset

    a = write_tokens(tmp_path / "a", n=4)
    with TokenShardWriter(tmp_path / "b", Vocabulary(text_size=256, image_size=32, num_sentinels=4)) as w:
        w.write(example(0), id="x")
    streams = [Stream(local=str(a)), Stream(local=str(tmp_path / "b"))]
    with pytest.raises(ValueError, match="disagree on the vocabulary"):
        CM3StreamingDataset(streams=streams, batch_size=2)
    assert os.path.isdir(a)


def test_exact_resumption_with_dataloader_workers(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "tok")
    _, loader = _loader(path, num_workers=2)
    full = [b["input_ids"] for b in loader]
    _, partial = _loader(path, num_workers=2)
    for step, _batch in enumerate(partial):
        if step == 4:
            state = partial.state_dict()
            break
    _, resumed = _loader(path, num_workers=2)
    resumed.load_state_dict(state)
    rest = [b["input_ids"] for b in resumed]
    assert len(rest) == len(full) - 5 and all(torch.equal(a, b) for a, b in zip(rest, full[5:], strict=True))
