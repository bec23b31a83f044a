"""MosaicML MDS shards of documents and of token ids, hash-checked and written atomically.

Two kinds of dataset directory, both plain MDS (``index.json`` + ``shard.NNNNN.mds``)
readable by ``streaming.StreamingDataset``:

* **document shards** (``kind="documents"``): a sample is ``{"id": str, "document": json}``
  with the :meth:`Document.to_json` form (images as base64 PNG, VQ codes as lists); raw
  data for tokenizer training, retrieval and CLIP;
* **token shards** (``kind="tokens"``): a sample is ``{"id": str, "tokens": int32[L],
  "modality_counts": int32[3] (text, image, special)}`` plus ``"loss_weights": float32[L]``
  when the dataset carries RA-CM3 weights and ``"targets": json`` (``[[start, end], ...]``,
  the token ranges of the task output, :meth:`DocumentTokenizer.encode_example_with_targets`)
  when it holds SFT examples, and ``"parts": json`` (``[[start, end], ...]``, where each
  document of a retrieval-augmented example lies,
  :func:`cm3leon.core.serialize.document_ranges`), so a reader can drop retrieved
  documents to fit a row (:func:`cm3leon.core.serialize.fit_example`).  These columns are
  optional: datasets written without them read as before.  Tokens are *untransformed* examples (Figure 9 layout); the CM3
  transform runs on the fly in the reader.

Next to ``index.json`` the writer puts ``manifest.json`` (kind, sample count, vocabulary,
columns -- exactly one of the schemas above, so never MDS's unsafe ``pkl`` encoding --,
statistics, and the SHA-256 and size of every file) and, last, the ``COMPLETE``
marker holding the manifest's own SHA-256.  Everything is written in a temporary sibling
directory renamed into place (:func:`cm3leon.core.io.atomic_directory`), so a conversion
that fails midway leaves nothing a reader accepts.  MDS's own ``hashes=["sha256"]`` are
also recorded in ``index.json``, so ``StreamingDataset(validate_hash="sha256")`` checks
shards it downloads from a remote.

:func:`verify_dataset` checks all of it before any sample is decoded and raises
:class:`ShardIntegrityError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from cm3leon.core.documents import Document
from cm3leon.core.io import COMPLETE_MARKER, atomic_directory, atomic_write_json, sha256_file
from cm3leon.core.vocab import Vocabulary

__all__ = [
    "DOCUMENT_COLUMNS",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "DatasetInfo",
    "DocumentShardWriter",
    "EmptyDatasetError",
    "ShardIntegrityError",
    "TokenSample",
    "TokenShardWriter",
    "iter_documents",
    "iter_samples",
    "iter_token_samples",
    "parse_index",
    "read_manifest",
    "target_array",
    "token_columns",
    "verify_dataset",
    "verify_files",
]

INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"
FORMAT = "cm3leon-mds"
FORMAT_VERSION = 1
DOCUMENT_COLUMNS = {"id": "str", "document": "json"}


def token_columns(with_loss_weights: bool, with_targets: bool = False, with_parts: bool = False) -> dict[str, str]:
    """MDS columns of token shards (``targets``/``parts`` are JSON: MDS arrays cannot be empty)."""
    cols = {"id": "str", "tokens": "ndarray:int32", "modality_counts": "ndarray:int32:3"}
    if with_loss_weights:
        cols["loss_weights"] = "ndarray:float32"
    if with_targets:
        cols["targets"] = "json"
    if with_parts:
        cols["parts"] = "json"
    return cols


class ShardIntegrityError(ValueError):
    """A dataset directory is incomplete, truncated, corrupt or tampered with (names the file)."""


class EmptyDatasetError(ValueError):
    """A writer was closed without a sample; nothing was written (a dataset is never empty)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`verify_dataset` found."""

    path: Path
    kind: str
    num_samples: int
    columns: dict[str, str]
    vocab: Vocabulary | None
    stats: dict[str, Any]
    meta: dict[str, Any]
    shards: list[dict[str, Any]] = field(repr=False)


@dataclass(frozen=True)
class TokenSample:
    """One sample of a token shard."""

    index: int
    id: str
    tokens: np.ndarray  # (L,) int64
    loss_weights: np.ndarray | None  # (L,) float32
    targets: np.ndarray | None = None  # (k, 2) int64 task output token ranges; None: no column
    parts: np.ndarray | None = None  # (D, 2) int64 document ranges (query last); None: no column


# ----------------------------------------------------------------- writers
class _ShardWriter:
    """Common machinery: temp dir, MDSWriter, manifest, COMPLETE, rename."""

    kind = ""

    def __init__(self, out: str | Path, columns: dict[str, str], *, overwrite: bool = False,
                 size_limit: int | str = 1 << 26, meta: Mapping[str, Any] | None = None) -> None:
        self.out = Path(out)
        self.columns = dict(columns)
        self.overwrite = overwrite
        self.size_limit = size_limit
        self.meta = dict(meta or {})
        self.num_samples = 0
        self._stack: contextlib.ExitStack | None = None
        self._writer: Any = None
        self._tmp: Path | None = None
        self._ids: set[str] = set()

    def __enter__(self) -> _ShardWriter:
        from streaming.base.format.mds.writer import MDSWriter

        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_directory(self.out, overwrite=self.overwrite))
        self._writer = MDSWriter(columns=self.columns, out=str(self._tmp), hashes=["sha256"],
                                 size_limit=self.size_limit)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        assert self._stack is not None and self._tmp is not None
        if exc is not None:  # the temporary directory is removed; nothing reaches self.out
            self._writer.cancel_future_jobs()
            return bool(self._stack.__exit__(exc_type, exc, tb))
        try:
            if self.num_samples == 0:
                raise EmptyDatasetError(f"{self.out}: no samples were written; refusing an empty dataset")
            self._writer.finish()
            self._finalise(self._tmp)
        except BaseException:
            self._writer.cancel_future_jobs()
            self._stack.__exit__(*sys.exc_info())
            raise
        return bool(self._stack.__exit__(None, None, None))

    def _put(self, sample: dict[str, Any], ident: str) -> None:
        if self._writer is None:
            raise RuntimeError(f"{type(self).__name__} must be used as a context manager")
        if ident in self._ids:
            raise ValueError(f"{self.out}: duplicate sample id {ident!r}")
        self._ids.add(ident)
        try:
            self._writer.write(sample)
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{self.out}: cannot encode sample {ident!r}: {err}") from err
        self.num_samples += 1

    def stats(self) -> dict[str, Any]:
        return {}

    def _vocab(self) -> dict[str, int] | None:
        return None

    def _finalise(self, tmp: Path) -> None:
        files = {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.iterdir())
            if p.is_file() and p.name not in (MANIFEST_FILE, COMPLETE_MARKER)
        }
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "num_samples": self.num_samples,
            "columns": self.columns,
            "vocab": self._vocab(),
            "stats": self.stats(),
            "meta": self.meta,
            "files": files,
        }
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
        atomic_write_json(tmp / COMPLETE_MARKER, {"manifest_sha256": sha256_file(tmp / MANIFEST_FILE)})


class DocumentShardWriter(_ShardWriter):
    """Write :class:`Document` objects as MDS document shards.

    Example::

        with DocumentShardWriter("data/docs") as w:
            for doc in docs:
                w.write(doc)

    Documents without an id get their sample index as id; ids must be unique.
    """

    kind = "documents"

    def __init__(self, out: str | Path, **kwargs: Any) -> None:
        super().__init__(out, DOCUMENT_COLUMNS, **kwargs)
        self._images = 0
        self._texts = 0

    def write(self, doc: Document) -> None:
        ident = doc.id or str(self.num_samples)
        if doc.is_empty():
            raise ValueError(f"document {ident!r} is empty (no text and no image)")
        payload = doc.replace(id=ident).to_json()
        self._images += len(doc.images)
        self._texts += len(doc.texts)
        self._put({"id": ident, "document": payload}, ident)

    def stats(self) -> dict[str, Any]:
        return {"images": self._images, "text_segments": self._texts}


class TokenShardWriter(_ShardWriter):
    """Write serialised examples (global token ids) as MDS token shards.

    Args:
        out: dataset directory to create.
        vocab: the unified vocabulary; every id is range-checked on write.
        with_loss_weights: store a per-token ``loss_weights`` column (RA-CM3 weighting).
        with_targets: store a ``targets`` column (task output token ranges, SFT data).
        with_parts: store a ``parts`` column (document ranges of retrieval-augmented
            examples, :func:`cm3leon.core.serialize.document_ranges`).
        overwrite / size_limit / meta: see :class:`DocumentShardWriter`.
    """

    kind = "tokens"

    def __init__(self, out: str | Path, vocab: Vocabulary, *, with_loss_weights: bool = False,
                 with_targets: bool = False, with_parts: bool = False, **kwargs: Any) -> None:
        super().__init__(out, token_columns(with_loss_weights, with_targets, with_parts), **kwargs)
        self.vocab = vocab
        self.with_loss_weights = with_loss_weights
        self.with_targets = with_targets
        self.with_parts = with_parts
        self._documents = 0  # documents of the examples written with parts
        self._counts = np.zeros(3, dtype=np.int64)
        self._min_len: int | None = None
        self._max_len = 0
        self._targets = np.zeros(2, dtype=np.int64)  # (samples with targets, target spans)

    def write(self, tokens: Any, id: str, loss_weights: Any = None, targets: Any = None,
              parts: Any = None) -> None:
        """Add one example; ``id`` names it in every later error message.

        ``targets``: token ranges ``(k, 2)`` of the task output (``None``/empty: none).
        ``parts``: document ranges ``(D, 2)``, query last (required with ``with_parts``).
        """
        where = f"token sample {id!r}"
        arr = self.vocab.check_ids(tokens, where=where)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{where}: expected a non-empty 1-D sequence, got shape {arr.shape}")
        counts = self.vocab.count_modalities(arr)
        modality = np.array([counts["text"], counts["image"], counts["special"] + counts["pad"]], np.int32)
        sample: dict[str, Any] = {"id": id, "tokens": arr.astype(np.int32), "modality_counts": modality}
        if self.with_loss_weights:
            w = np.ones(arr.size, np.float32) if loss_weights is None else np.asarray(loss_weights, np.float32)
            if w.shape != arr.shape:
                raise ValueError(f"{where}: loss_weights shape {w.shape} != tokens shape {arr.shape}")
            sample["loss_weights"] = w
        elif loss_weights is not None:
            raise ValueError(f"{where}: loss_weights given but the writer has with_loss_weights=False")
        if self.with_targets:
            sample["targets"] = _check_targets(targets, arr, self.vocab, where)
            self._targets += [bool(sample["targets"]), len(sample["targets"])]
        elif targets is not None and np.size(targets):
            raise ValueError(f"{where}: targets given but the writer has with_targets=False")
        if self.with_parts:
            sample["parts"] = _check_parts(parts, arr, where)
            self._documents += len(sample["parts"])
        elif parts is not None:
            raise ValueError(f"{where}: parts given but the writer has with_parts=False")
        self._put(sample, id)
        self._counts += modality
        self._min_len = arr.size if self._min_len is None else min(self._min_len, arr.size)
        self._max_len = max(self._max_len, arr.size)

    def _vocab(self) -> dict[str, int]:
        return self.vocab.to_dict()

    def stats(self) -> dict[str, Any]:
        text, image, special = (int(c) for c in self._counts)
        out = {"tokens": text + image + special, "text_tokens": text, "image_tokens": image,
               "special_tokens": special, "min_length": self._min_len or 0, "max_length": self._max_len}
        if self.with_targets:
            out.update(samples_with_targets=int(self._targets[0]), target_spans=int(self._targets[1]))
        if self.with_parts:
            out.update(documents=self._documents)
        return out


def _check_parts(parts: Any, tokens: np.ndarray, where: str) -> list[list[int]]:
    """Document ranges as ``[[start, end], ...]``: in order, covering the example after ``<eos>``.

    Consecutive ranges share one token (the ``<break>`` between two images), meet, or leave
    one inserted boundary ``<break>`` between them.
    """
    if parts is None or not np.size(parts):
        raise ValueError(f"{where}: parts (document ranges) are required by this writer")
    arr = np.asarray(parts)
    if arr.dtype.kind not in "iu" or arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{where}: parts must be integer (D, 2) token ranges, got {arr.dtype} {arr.shape}")
    ranges = arr.astype(np.int64).tolist()
    previous = 0
    for i, (start, end) in enumerate(ranges):
        lo, hi = (1, 1) if i == 0 else (previous - 1, previous + 1)
        if not lo <= start <= hi or not start < end <= tokens.size:
            raise ValueError(f"{where}: parts {ranges} do not tile the {tokens.size} tokens after <eos>")
        previous = end
    if previous != tokens.size:
        raise ValueError(f"{where}: parts {ranges} end at {previous}, the example at {tokens.size}")
    return ranges


def _check_targets(targets: Any, tokens: np.ndarray, vocab: Vocabulary, where: str) -> list[list[int]]:
    """Task target ranges as ``[[start, end], ...]``: ordered, disjoint, text or image tokens only."""
    if targets is None or not np.size(targets):
        return []
    arr = np.asarray(targets)
    if arr.dtype.kind not in "iu" or arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{where}: targets must be integer (k, 2) token ranges, got {arr.dtype} {arr.shape}")
    content = np.asarray(vocab.is_text(tokens), dtype=bool) | np.asarray(vocab.is_image(tokens), dtype=bool)
    previous = 0
    for start, end in arr.tolist():
        if not previous <= start < end <= tokens.size:
            raise ValueError(f"{where}: target [{start}, {end}) is empty, out of order or outside "
                             f"the {tokens.size} tokens")  # fmt: skip
        if not content[start:end].all():
            raise ValueError(f"{where}: target [{start}, {end}) holds a special token (crosses <break>?)")
        previous = end
    return arr.astype(np.int64).tolist()


# ----------------------------------------------------------- verification
def _fail(path: Path, message: str) -> ShardIntegrityError:
    return ShardIntegrityError(f"{path}: {message}")


def _load_json_file(path: Path, what: str) -> Any:
    if not path.is_file():
        raise _fail(path, f"missing {what}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"corrupt or truncated {what} (not valid JSON: {err})") from None


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read and structurally check ``manifest.json`` against the ``COMPLETE`` marker."""
    directory = Path(directory)
    complete = directory / COMPLETE_MARKER
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: dataset directory not found")
    if not complete.is_file():
        raise _fail(directory, f"no {COMPLETE_MARKER} marker: the conversion that wrote it did not finish")
    marker = _load_json_file(complete, "COMPLETE marker")
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise _fail(manifest_path, "missing manifest (not a cm3leon dataset?)")
    expected = marker.get("manifest_sha256") if isinstance(marker, dict) else None
    if expected is not None and sha256_file(manifest_path) != expected:
        raise _fail(manifest_path, "SHA-256 does not match the COMPLETE marker (manifest modified)")
    manifest = _load_json_file(manifest_path, "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _fail(manifest_path, f"not a {FORMAT} manifest")
    for key in ("kind", "num_samples", "columns", "files"):
        if key not in manifest:
            raise _fail(manifest_path, f"manifest lacks {key!r}")
    if manifest["kind"] not in ("documents", "tokens"):
        raise _fail(manifest_path, f"unknown dataset kind {manifest['kind']!r}")
    _check_columns(manifest_path, manifest["kind"], manifest["columns"])
    return manifest


def _allowed_columns(kind: str) -> list[dict[str, str]]:
    if kind == "documents":
        return [DOCUMENT_COLUMNS]
    flags = [(w, t, p) for w in (False, True) for t in (False, True) for p in (False, True)]
    return [token_columns(*f) for f in flags]


def _check_columns(path: Path, kind: str, columns: Any) -> None:
    """The columns must be exactly one of cm3leon's schemas: no ``pkl`` (or any other
    encoding that could run code when decoded) can reach MDS, whoever wrote the dataset."""
    if not isinstance(columns, dict) or columns not in _allowed_columns(kind):
        unsafe = sorted(k for k, v in columns.items() if "pkl" in str(v)) if isinstance(columns, dict) else []
        why = f" (unsafe pkl encoding in {unsafe})" if unsafe else ""
        raise _fail(path, f"columns {columns!r} are not a cm3leon {kind} schema{why}")


def verify_files(directory: Path, files: Mapping[str, Any], names: list[str] | None = None,
                 *, check_hashes: bool = True) -> None:
    """Check size and SHA-256 of ``names`` (default: every file) against the manifest entries."""
    for name in names if names is not None else sorted(files):
        info = files.get(name)
        path = directory / name
        if info is None:
            raise _fail(path, "file is not listed in the manifest")
        if not path.is_file():
            raise _fail(path, "missing file listed in the manifest")
        size = path.stat().st_size
        if size != info["bytes"]:
            state = "truncated" if size < info["bytes"] else "has extra bytes"
            raise _fail(path, f"{state}: {size} bytes, manifest says {info['bytes']}")
        if check_hashes and sha256_file(path) != info["sha256"]:
            raise _fail(path, "SHA-256 mismatch: the file is corrupt or was modified")


def parse_index(path: Path, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Parse ``index.json`` and check it against the manifest (shard files, sample count)."""
    index = _load_json_file(path, "index.json")
    shards = index.get("shards") if isinstance(index, dict) else None
    if not isinstance(shards, list) or index.get("version") != 2:
        raise _fail(path, "not an MDS version-2 index (missing 'shards' list)")
    total = 0
    for i, shard in enumerate(shards):
        try:
            name, samples = shard["raw_data"]["basename"], int(shard["samples"])
        except (KeyError, TypeError, ValueError):
            raise _fail(path, f"shard entry {i} is malformed") from None
        if name not in manifest["files"]:
            raise _fail(path, f"shard {name!r} is not listed in {MANIFEST_FILE}")
        if shard.get("compression"):
            raise _fail(path, f"shard {name!r} is compressed; cm3leon datasets are uncompressed")
        encodings = dict(zip(shard.get("column_names") or [], shard.get("column_encodings") or [], strict=False))
        if encodings != manifest["columns"]:
            raise _fail(path, f"shard {name!r} has columns {encodings}, {MANIFEST_FILE} says {manifest['columns']}")
        total += samples
    if total != manifest["num_samples"]:
        raise _fail(path, f"holds {total} samples, {MANIFEST_FILE} says {manifest['num_samples']}")
    return shards


def verify_dataset(path: str | Path, *, check_hashes: bool = True) -> DatasetInfo:
    """Check a dataset directory before anything reads a sample.

    Checks, in order: the ``COMPLETE`` marker; the manifest (against the marker's hash);
    ``index.json`` (size, SHA-256, JSON, shard list, sample count); every shard (size, then
    SHA-256 unless ``check_hashes=False``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ShardIntegrityError: anything else, naming the offending file.
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    files = manifest["files"]
    verify_files(directory, files, [INDEX_FILE], check_hashes=True)
    shards = parse_index(directory / INDEX_FILE, manifest)
    verify_files(directory, files, [s["raw_data"]["basename"] for s in shards], check_hashes=check_hashes)
    vocab = None
    if manifest.get("vocab"):
        vocab = Vocabulary.from_dict(manifest["vocab"], source=str(directory / MANIFEST_FILE))
    return DatasetInfo(directory, manifest["kind"], int(manifest["num_samples"]), dict(manifest["columns"]),
                       vocab, dict(manifest.get("stats") or {}), dict(manifest.get("meta") or {}), shards)


# ----------------------------------------------------------------- readers
def iter_samples(path: str | Path, *, verify: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(index, raw MDS sample)`` of a local dataset, in order (after verification)."""
    from streaming.base.format import reader_from_json

    info = verify_dataset(path, check_hashes=verify)
    index = 0
    for entry in info.shards:
        reader = reader_from_json(str(info.path), None, entry)
        reader.validate(allow_unsafe_types=False)
        name = entry["raw_data"]["basename"]
        for i in range(int(entry["samples"])):
            try:
                sample = reader.get_item(i)
            except Exception as err:  # a bad sample inside an unverified shard
                raise ShardIntegrityError(f"{info.path / name}: cannot decode sample {i}: {err}") from err
            yield index, sample
            index += 1


def iter_documents(path: str | Path, *, verify: bool = True) -> Iterator[Document]:
    """Yield the documents of a document-shard directory, in order."""
    _expect_kind(path, "documents")
    for index, sample in iter_samples(path, verify=verify):
        yield Document.from_json(sample["document"], source=f"{path}: sample {index} (id {sample['id']!r})")


def iter_token_samples(path: str | Path, *, verify: bool = True) -> Iterator[TokenSample]:
    """Yield the examples of a token-shard directory, ids range-checked against its vocabulary."""
    info = _expect_kind(path, "tokens")
    assert info.vocab is not None
    for index, sample in iter_samples(path, verify=verify):
        where = f"{path}: sample {index} (id {sample['id']!r})"
        tokens = info.vocab.check_ids(sample["tokens"], where=where)
        weights = sample.get("loss_weights")
        yield TokenSample(index, sample["id"], tokens, None if weights is None else np.asarray(weights, np.float32),
                          target_array(sample.get("targets"), where=where),
                          target_array(sample.get("parts"), where=where, what="parts"))  # fmt: skip


def target_array(value: Any, *, where: str, what: str = "targets") -> np.ndarray | None:
    """A ``targets`` (or ``parts``) column value as ``(k, 2)`` int64 (``None``: no column)."""
    if value is None:
        return None
    try:
        return np.asarray(value, dtype=np.int64).reshape(-1, 2)
    except (TypeError, ValueError) as err:
        raise ShardIntegrityError(f"{where}: malformed {what} {value!r}: {err}") from None


def _expect_kind(path: str | Path, kind: str) -> DatasetInfo:
    info = verify_dataset(path, check_hashes=False)
    if info.kind != kind:
        raise ValueError(f"{path}: holds {info.kind} shards, expected {kind}")
    if kind == "tokens" and info.vocab is None:
        raise _fail(Path(path) / MANIFEST_FILE, "token dataset without a vocabulary")
    return info

