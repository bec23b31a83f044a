"""Reading shards for training: ``StreamingDataset`` readers with the CM3 transform, packed batches.

The pipeline the trainer uses::

    ds = CM3StreamingDataset(remote="s3://bucket/pretrain", local="/cache/pretrain",
                             batch_size=8, shuffle=True, cm3=CM3Config(), cm3_seed=17)
    loader = build_packed_dataloader(ds, seq_len=4096)   # rows (R, 4096) per step
    state = loader.state_dict()  ...  loader.load_state_dict(state)   # exact resumption

**Why these classes subclass** ``StreamingDataset``: overriding ``get_item`` is the extension
point the library documents, and both ``StreamingDataLoader`` and Composer's checkpointing
only save/restore iteration state for ``isinstance(dataset, StreamingDataset)``.

**Exact resumption with packing.** ``StreamingDataset`` resumes at a global sample offset
and assumes every rank consumed the same number of samples.  Packing happens in the
``collate_fn`` (:class:`cm3leon.core.packing.PackingCollator`), so every step consumes
exactly ``batch_size`` examples per rank and the offset is exact.  The loader here counts
examples (not rows) towards that offset; with Composer pass
``DataSpec(loader, get_num_samples_in_batch=raw_samples_in_batch)``.
The CM3 spans of sample ``i`` in epoch ``e`` come from ``cm3_rng(cm3_seed, e, i)``, so a
resumed run sees exactly the same transformed examples.

**Integrity.** Before ``StreamingDataset`` opens anything, the ``COMPLETE`` marker,
``manifest.json`` and ``index.json`` are fetched from ``remote`` (or read from ``local``)
and verified, every shard already in the local cache is hash-checked, and a ``remote``
that is a directory (a shared file system) has every shard checked where it lies (size and
SHA-256), so a corrupt shard there is named before step 1.  Shards of an object store
(``s3://``) are checked before step 1 too, as ``verify_remote`` says: ``size`` (default:
one ``HEAD`` per shard, compared with the manifest's size), ``full`` (local rank 0
downloads every shard into the cache and hash-checks it) or ``none``; and always by
streaming's ``validate_hash="sha256"`` when downloaded, a failure being raised as
:class:`ShardIntegrityError` naming the shard, its remote and its cache file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from streaming import Stream, StreamingDataLoader, StreamingDataset

from cm3leon.core.documents import Document
from cm3leon.core.io import COMPLETE_MARKER
from cm3leon.core.objective import CM3Config, cm3_example, max_growth, whole_segment_counts
from cm3leon.core.packing import PackingCollator, raw_samples_in_batch
from cm3leon.core.serialize import fit_example
from cm3leon.core.shards import (
    INDEX_FILE,
    MANIFEST_FILE,
    DatasetInfo,
    ShardIntegrityError,
    parse_index,
    read_manifest,
    target_array,
    verify_dataset,
    verify_files,
)
from cm3leon.core.vocab import Vocabulary

__all__ = [
    "DEFAULT_CM3",
    "VERIFY_REMOTE",
    "CM3StreamingDataset",
    "DocumentStreamingDataset",
    "PackedStreamingDataLoader",
    "build_packed_dataloader",
    "stage_dataset",
]


DEFAULT_CM3 = CM3Config()  # read-only default: CM3 spans, metaseq lengths, images maskable
#: How object-store shards are checked before step 1 (``stage_dataset(verify_remote=)``).
VERIFY_REMOTE = ("size", "full", "none")


def _join(remote: str, name: str) -> str:
    return f"{remote.rstrip('/')}/{name}" if "://" in remote else os.path.join(remote, name)


def _remote_directory(remote: str) -> Path | None:
    """The directory of a ``remote`` given as a path (``None``: an object-store URL)."""
    return None if "://" in remote else Path(remote)


def _fetch(remote: str, name: str, local_dir: Path, timeout: float) -> None:
    """Copy ``remote/name`` to ``local_dir/name`` atomically (per-process temporary name)."""
    from streaming.base.storage import CloudDownloader

    target = local_dir / name
    tmp = local_dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    source = _join(remote, name)
    try:
        downloader = CloudDownloader.get(remote)
        downloader.download(source, str(tmp), timeout)
        downloader.clean_up()
    except Exception as err:
        tmp.unlink(missing_ok=True)
        raise FileNotFoundError(f"{source}: cannot fetch dataset file: {err}") from err
    os.replace(tmp, target)


def _object_sizes(remote: str, names: Sequence[str]) -> dict[str, int]:
    """Sizes of ``remote/name`` objects by one ``HEAD`` each (Composer's object store:
    ``S3_ENDPOINT_URL`` and credentials from the environment)."""
    from composer.utils import maybe_create_object_store_from_uri, parse_uri

    store = maybe_create_object_store_from_uri(remote)
    prefix = parse_uri(remote)[2].strip("/")
    sizes = {}
    for name in names:
        try:
            sizes[name] = int(store.get_object_size(f"{prefix}/{name}" if prefix else name))
        except Exception as err:  # FileNotFoundError, botocore errors: name the object
            raise ShardIntegrityError(f"{_join(remote, name)}: cannot read the shard's size: {err}") from None
    return sizes


def _verify_object_store(remote: str, local: Path, files: Any, names: Sequence[str], mode: str,
                         timeout: float) -> None:
    """Check object-store shards before step 1 (see :func:`stage_dataset`'s ``verify_remote``)."""
    if mode == "full" and int(os.environ.get("LOCAL_RANK", "0") or 0) == 0:
        for name in names:
            if not (local / name).exists():
                _fetch(remote, name, local, timeout)
            try:
                verify_files(local, files, [name], check_hashes=True)
            except ShardIntegrityError as err:
                (local / name).unlink(missing_ok=True)  # never leave a bad shard in the cache
                raise ShardIntegrityError(f"{_join(remote, name)}: {err}") from None
    elif mode in ("size", "full"):
        for name, size in _object_sizes(remote, names).items():
            if size != files[name]["bytes"]:
                state = "truncated" if size < files[name]["bytes"] else "has extra bytes"
                raise ShardIntegrityError(
                    f"{_join(remote, name)}: {state}: {size} bytes, manifest says {files[name]['bytes']} "
                    "(checked before training; the shard is corrupt)"
                )


def stage_dataset(remote: str | None, local: str | Path, *, check_hashes: bool = True,
                  timeout: float = 60.0, verify_remote: str = "size") -> DatasetInfo:
    """Verify a dataset (and its local cache) before ``StreamingDataset`` reads it.

    Args:
        remote: object-store URL or directory, or ``None`` when ``local`` is the dataset.
        local: the dataset directory (``remote=None``) or the local cache of ``remote``.
        check_hashes: hash every shard present locally (sizes are always checked); only
            local rank 0 hashes, the other ranks of a node check sizes.
        timeout: seconds per metadata download.
        verify_remote: object-store shards before step 1 (a directory ``remote`` is
            always checked in place): ``size`` (a ``HEAD`` per shard against the
            manifest), ``full`` (local rank 0 downloads every shard into ``local`` and
            hash-checks it) or ``none`` (checked only when streamed).

    Raises:
        ShardIntegrityError: missing ``COMPLETE``, corrupt ``index.json``, a truncated or
            modified shard; the message names the file.
    """
    local = Path(local)
    if verify_remote not in VERIFY_REMOTE:
        raise ValueError(f"verify_remote={verify_remote!r}: choose one of {', '.join(VERIFY_REMOTE)}")
    if int(os.environ.get("LOCAL_RANK", "0") or 0) > 0:
        check_hashes = False  # local rank 0 hashes the node's files; the others check sizes
    if remote is None:
        return verify_dataset(local, check_hashes=check_hashes)
    local.mkdir(parents=True, exist_ok=True)
    for name in (COMPLETE_MARKER, MANIFEST_FILE, INDEX_FILE):
        _fetch(remote, name, local, timeout)
    manifest = read_manifest(local)
    verify_files(local, manifest["files"], [INDEX_FILE])
    shards = parse_index(local / INDEX_FILE, manifest)
    present = [s["raw_data"]["basename"] for s in shards if (local / s["raw_data"]["basename"]).exists()]
    verify_files(local, manifest["files"], present, check_hashes=check_hashes)
    source = _remote_directory(remote)
    if source is not None:  # readable in place: check every shard before any is downloaded
        verify_files(source, manifest["files"], [s["raw_data"]["basename"] for s in shards],
                     check_hashes=check_hashes)
    else:
        missing = [s["raw_data"]["basename"] for s in shards if s["raw_data"]["basename"] not in present]
        _verify_object_store(remote, local, manifest["files"], missing, verify_remote, timeout)
    vocab = Vocabulary.from_dict(manifest["vocab"], source=str(local / MANIFEST_FILE)) if manifest.get("vocab") else None
    return DatasetInfo(local, manifest["kind"], int(manifest["num_samples"]), dict(manifest["columns"]),
                       vocab, dict(manifest.get("stats") or {}), dict(manifest.get("meta") or {}), shards)


def _stage_all(remote: str | None, local: str | None, streams: Sequence[Stream] | None,
               kind: str, check_hashes: bool, verify_remote: str = "size") -> list[DatasetInfo]:
    pairs = [(s.remote, s.local) for s in streams] if streams else [(remote, local)]
    infos = []
    for r, loc in pairs:
        if loc is None:
            raise ValueError(f"stream {r!r}: give a `local` directory (cache) so it can be verified")
        info = stage_dataset(r, loc, check_hashes=check_hashes, verify_remote=verify_remote)
        if info.kind != kind:
            raise ValueError(f"{r or loc}: holds {info.kind} shards, expected {kind}")
        infos.append(info)
    return infos


@contextlib.contextmanager
def _shm_registration_lock() -> Iterator[None]:
    """Serialise streaming's shared-memory registration among the processes of this host.

    ``StreamingDataset`` takes the first ``/dev/shm/{prefix:06}_locals`` that does not exist
    and then creates it; two processes doing that at the same moment (pytest-xdist workers,
    parallel evaluation jobs, two ``data``/``eval`` commands) pick the same prefix and one
    fails with ``FileExistsError: '/000002_locals'`` (streaming#884).  Only a job's local
    leader creates the segment, so only it takes this host-wide ``flock`` (the other ranks
    of its job wait in streaming's barriers, not here).
    """
    from streaming.base.world import World

    if not World.detect().is_local_leader:
        yield
        return
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    with open(folder / "cm3leon-streaming-prefix.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _VerifiedStreamingDataset(StreamingDataset):
    """Stage and verify every stream first; surface background download failures.

    ``StreamingDataset`` downloads shards in a background thread; when that thread fails
    (e.g. ``Checksum failure`` of a tampered remote shard) the stock iterator just stops
    early (and the thread pool logs a traceback).  Here the failure is kept, without the
    traceback, and re-raised as :class:`ShardIntegrityError` naming the shard at the end of
    the iteration (and by ``get_item``), so a corrupt shard never silently shortens an epoch.
    """

    kind = ""

    def __init__(self, *, remote: str | None = None, local: str | None = None,
                 streams: Sequence[Stream] | None = None, check_hashes: bool = True,
                 verify_remote: str = "size", **kwargs: Any) -> None:
        if kwargs.get("allow_unsafe_types"):
            raise ValueError("allow_unsafe_types=True is refused: cm3leon datasets never hold pkl columns")
        self.infos = _stage_all(remote, local, streams, self.kind, check_hashes, verify_remote)
        self._background_error: BaseException | None = None
        if any(s.remote is not None for s in streams or []) or remote is not None:
            kwargs.setdefault("validate_hash", "sha256")
        with _shm_registration_lock():
            super().__init__(remote=remote, local=local, streams=streams, **kwargs)

    def on_exception(self, future: Any) -> None:
        error = future.exception()
        if error is not None:  # as streaming's, but kept for the reader instead of re-raised
            self._background_error = error
            self._event.set()  # stops the other download threads

    def _raise_background_error(self) -> None:
        error = getattr(self, "_background_error", None)
        if error is None:
            return
        message = str(error)
        if message.startswith("Checksum failure: "):
            cached = Path(message.removeprefix("Checksum failure: "))
            remote = next((s.remote for s in self.streams if s.remote and cached.parent.resolve() == Path(s.local).resolve()), None)
            origin = f" (downloaded from {_join(remote, cached.name)})" if remote else ""
            raise ShardIntegrityError(f"{cached}: SHA-256 mismatch{origin}: the shard is corrupt") from error
        raise ShardIntegrityError(f"preparing a shard failed: {error}") from error

    def __iter__(self) -> Any:
        yield from super().__iter__()
        self._raise_background_error()

    def _raw_item(self, sample_id: int, retry: int) -> dict[str, Any]:
        try:
            return super().get_item(sample_id, retry)
        except RuntimeError:
            self._raise_background_error()
            raise


class CM3StreamingDataset(_VerifiedStreamingDataset):
    """Token shards -> CM3-transformed examples, on top of ``StreamingDataset``.

    Args:
        remote / local / streams: as ``StreamingDataset`` (every stream needs a ``local``).
        cm3: transform settings (default: CM3's, :data:`DEFAULT_CM3`); ``None`` yields the
            untransformed examples (evaluation, inspection).  Task target ranges stored in
            the shards (``targets`` column, SFT mixtures) reach the transform, which masks
            exactly them with probability ``cm3.target_prob``.
        cm3_seed: seed of the per-sample span draws.
        max_tokens: the row length examples must fit after the CM3 transform (the trainer
            passes ``seq_len``).  A retrieval-augmented example (shards with the ``parts``
            column, ``cm3leon retrieval augment``) longer than ``max_tokens`` minus the
            transform's growth (:func:`cm3leon.core.objective.max_growth`) loses retrieved
            documents, last first, *before* the transform
            (:func:`cm3leon.core.serialize.fit_example`), so packing never cuts its query
            or the infill blocks CM3 moves to the end; a query that alone does not fit is
            a ``ValueError`` naming the sample.  Examples without ``parts`` are left to the
            packer's ``overflow`` policy.  ``None``: no fitting.
        check_hashes: hash local shards when opening (sizes are always checked).
        verify_remote: object-store shards before step 1 (:func:`stage_dataset`).
        **kwargs: any other ``StreamingDataset`` argument (``batch_size`` is required for
            iteration; ``shuffle``, ``shuffle_seed``, ``epoch_size``, ...).

    Items: ``{"tokens": int64 (L',), "loss_weights": float32 (L',) | None, "id": str,
    "sample_id": int, "dropped_documents": int, "whole_text_masks": int,
    "whole_image_masks": int}`` (the last two: CM3 spans that are a whole caption / image,
    :func:`cm3leon.core.objective.whole_segment_counts`), ids range-checked before the
    transform (errors name the sample).
    """

    kind = "tokens"

    def __init__(self, *, cm3: CM3Config | None = DEFAULT_CM3, cm3_seed: int = 0,
                 max_tokens: int | None = None, **kwargs: Any) -> None:
        self.cm3 = cm3
        self.cm3_seed = int(cm3_seed)
        self.max_tokens = max_tokens
        super().__init__(**kwargs)
        vocabs = {info.vocab for info in self.infos}
        if len(vocabs) != 1 or None in vocabs:
            raise ValueError(f"streams disagree on the vocabulary: {sorted(map(str, vocabs))}")
        self.vocab: Vocabulary = self.infos[0].vocab  # type: ignore[assignment]
        self.budget: int | None = None
        if max_tokens is not None:
            self.budget = int(max_tokens) - (max_growth(cm3, self.vocab) if cm3 is not None else 0)
            if self.budget < 2:
                raise ValueError(f"max_tokens={max_tokens} leaves no room for an example after the CM3 transform")

    @property
    def current_epoch(self) -> int:
        """The epoch being iterated (0 before the first ``__iter__``)."""
        return max(int(self.next_epoch) - 1, 0)

    def get_item(self, sample_id: int, retry: int = 7) -> dict[str, Any]:
        sample = self._raw_item(sample_id, retry)
        ident = str(sample["id"])
        where = f"sample {sample_id} (id {ident!r})"
        tokens = self.vocab.check_ids(sample["tokens"], where=where)
        weights = sample.get("loss_weights")
        targets = target_array(sample.get("targets"), where=where)  # None: a shard without the column
        parts = target_array(sample.get("parts"), where=where, what="parts")
        dropped = 0
        if self.budget is not None and parts is not None:
            tokens, weights, targets, dropped = fit_example(tokens, parts, self.budget, self.vocab, weights=weights,
                                                            targets=targets, where=where)  # fmt: skip
        whole = (0, 0)
        if self.cm3 is not None:
            result = cm3_example(tokens, self.vocab, self.cm3, seed=self.cm3_seed, epoch=self.current_epoch,
                                 index=sample_id, weights=weights, targets=targets, where=where)
            whole = whole_segment_counts(tokens, result.spans, self.vocab)
            tokens, weights = result.tokens, result.weights
        return {
            "tokens": tokens,
            "loss_weights": None if weights is None else np.asarray(weights, np.float32),
            "id": ident,
            "sample_id": int(sample_id),
            "dropped_documents": dropped,
            "whole_text_masks": whole[0],
            "whole_image_masks": whole[1],
        }


class DocumentStreamingDataset(_VerifiedStreamingDataset):
    """Document shards -> ``{"id": str, "document": Document}`` (use ``collate_fn=list``)."""

    kind = "documents"

    def get_item(self, sample_id: int, retry: int = 7) -> dict[str, Any]:
        sample = self._raw_item(sample_id, retry)
        ident = str(sample["id"])
        try:
            doc = Document.from_json(sample["document"], source=f"sample {sample_id} (id {ident!r})")
        except ValueError as err:
            raise ShardIntegrityError(str(err)) from None
        return {"id": ident, "document": doc}


class PackedStreamingDataLoader(StreamingDataLoader):
    """``StreamingDataLoader`` whose sample count is source examples, not packed rows."""

    def _get_batch_size(self, batch: Any) -> int:
        return raw_samples_in_batch(batch)


def build_packed_dataloader(dataset: CM3StreamingDataset, *, seq_len: int, batch_size: int | None = None,
                            overflow: str = "truncate", strategy: str = "ffd", num_rows: int | None = None,
                            num_workers: int = 0, **kwargs: Any) -> PackedStreamingDataLoader:
    """A loader yielding packed rows from ``batch_size`` examples per step (per rank).

    Args:
        dataset: the examples; its ``batch_size`` must equal the loader's (exact resumption).
        seq_len: row length.
        batch_size: examples per step per rank (default: ``dataset.batch_size``).
        overflow / strategy / num_rows: see :class:`PackingCollator`.
        num_workers / **kwargs: passed to the DataLoader.
    """
    batch_size = batch_size if batch_size is not None else dataset.batch_size
    if batch_size is None or dataset.batch_size != batch_size:
        raise ValueError(
            f"StreamingDataset batch_size ({dataset.batch_size}) must equal the loader batch_size "
            f"({batch_size}) for deterministic resumption"
        )
    collate = PackingCollator(seq_len, dataset.vocab, overflow=overflow, strategy=strategy, num_rows=num_rows)
    return PackedStreamingDataLoader(dataset, batch_size=batch_size, collate_fn=collate,
                                     num_workers=num_workers, **kwargs)
