"""Join dataset directories written in parts into one dataset directory.

Parallel writers (the ranks of ``cm3leon retrieval augment``, workers of a parallel
``data prepare``) each write a complete dataset directory -- a *part*, in the format of
:mod:`cm3leon.core.shards`.  :func:`merge_datasets` joins the parts, in the order given,
into one directory that reads exactly as if one writer had written every sample:

* every shard file of every part is hard-linked (copied where a link is impossible)
  into the output under a new name, ``shard.NNNNN.mds`` numbered across the parts.  The
  bytes do not change, so the SHA-256 each part's manifest and ``index.json`` recorded
  still hold and nothing is re-hashed;
* one ``index.json`` lists the shards in part order.  This is what
  ``streaming.base.util.merge_index`` does, except that streaming's keeps the part
  sub-directories in the shard paths and rewrites ``index.json`` in place; here the
  layout stays flat (the one every cm3leon reader and ``data.verify_remote`` expects) and
  the output appears atomically;
* one manifest: kind, columns and vocabulary must agree across parts (the error names
  the first part that differs); statistics are summed, ``min_*`` / ``max_*`` keys take
  the minimum / maximum; ``meta`` is the caller's.

Nothing is written unless every part is complete (``COMPLETE`` marker, manifest,
``index.json`` and shard sizes checked; shard hashes too with ``verify=True``).  The
parts are left in place -- the caller removes them once the merge returned -- so a merge
that was interrupted at any point can simply run again.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import COMPLETE_MARKER, atomic_directory, atomic_write_json, sha256_file
from cm3leon.core.shards import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    MANIFEST_FILE,
    DatasetInfo,
    read_manifest,
)

__all__ = ["merge_datasets", "merge_stats"]


def merge_stats(stats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine per-part statistics: numbers summed, ``min_*`` / ``max_*`` by min / max.

    A non-numeric value is kept only when every part that has the key agrees on it.
    """
    out: dict[str, Any] = {}
    keys = dict.fromkeys(k for s in stats for k in s)
    for key in keys:
        values = [s[key] for s in stats if key in s]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            pick = min if key.startswith("min_") else max if key.startswith("max_") else sum
            out[key] = pick(values)
        elif all(v == values[0] for v in values):
            out[key] = values[0]
    return out


def _check_same(parts: Sequence[tuple[DatasetInfo, dict[str, Any]]]) -> None:
    first, first_manifest = parts[0]
    for info, manifest in parts[1:]:
        for key in ("kind", "columns", "vocab"):
            if manifest.get(key) != first_manifest.get(key):
                raise ValueError(
                    f"{info.path}: its {key} differs from {first.path}'s; parts of one dataset must "
                    f"be written with the same {key}"
                )


#: ``os.link`` failures that mean "no hard link possible here", where a copy is right.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def _link(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy where the file system cannot link); never
    replaces an existing ``dst`` (two parts naming one output shard is an error)."""
    try:
        os.link(src, dst)
    except OSError as err:
        if err.errno not in _NO_LINK:
            raise OSError(err.errno, f"cannot link {src} to {dst}: {err.strerror}") from err
        shutil.copyfile(src, dst)


def merge_datasets(parts: Sequence[str | Path], out: str | Path, *, meta: Mapping[str, Any] | None = None,
                   overwrite: bool = False, verify: bool = False) -> DatasetInfo:
    """Write the samples of ``parts`` (in order) as the one dataset directory ``out``.

    Args:
        parts: complete dataset directories of one kind, columns and vocabulary.
        out: the merged dataset (written atomically; locked while written).
        meta: the merged manifest's ``meta`` (default: the first part's).
        overwrite: replace an existing ``out``.
        verify: also check every shard's SHA-256 before merging (sizes are always checked).

    Returns:
        What :func:`cm3leon.core.shards.verify_dataset` reads back from ``out``.

    Raises:
        ValueError: no parts, or parts that disagree (names the part).
        cm3leon.core.shards.ShardIntegrityError: a part is incomplete or damaged (names the file).
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    from cm3leon.core.shards import verify_dataset

    if not parts:
        raise ValueError(f"{out}: no parts to merge")
    checked = [(verify_dataset(p, check_hashes=verify), read_manifest(p)) for p in parts]
    _check_same(checked)
    entries: list[dict[str, Any]] = []
    files: dict[str, Any] = {}
    sources: list[Path] = []
    for info, manifest in checked:
        for entry in info.shards:
            old = entry["raw_data"]["basename"]
            new = f"shard.{len(entries):05d}.mds"
            moved = copy.deepcopy(entry)
            moved["raw_data"]["basename"] = new
            entries.append(moved)
            files[new] = manifest["files"][old]
            sources.append(info.path / old)
    first = checked[0][1]
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "kind": first["kind"],
        "num_samples": sum(int(info.num_samples) for info, _ in checked),
        "columns": first["columns"], "vocab": first.get("vocab"),
        "stats": merge_stats([m.get("stats") or {} for _, m in checked]),
        "meta": dict(meta) if meta is not None else dict(first.get("meta") or {}),
    }  # fmt: skip
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for src, entry in zip(sources, entries, strict=True):
            _link(src, tmp / entry["raw_data"]["basename"])
        (tmp / INDEX_FILE).write_text(json.dumps({"version": 2, "shards": entries}, sort_keys=True, indent=4))
        files[INDEX_FILE] = {"sha256": sha256_file(tmp / INDEX_FILE), "bytes": (tmp / INDEX_FILE).stat().st_size}
        manifest["files"] = dict(sorted(files.items()))
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
        atomic_write_json(tmp / COMPLETE_MARKER, {"manifest_sha256": sha256_file(tmp / MANIFEST_FILE)})
    return verify_dataset(out, check_hashes=False)
