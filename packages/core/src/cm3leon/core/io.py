"""Atomic file and directory writes, hashing and safe loading helpers.

Everything cm3leon writes that a later step reads (configs, shards, indexes,
checkpoints, tokenizers, reports) goes through these helpers, so a crash never
leaves a partial file under its final name:

* files are written to a temporary sibling, flushed, ``fsync``-ed and renamed
  with :func:`os.replace` (atomic on POSIX);
* directories are filled under a temporary sibling name and renamed into place
  when complete, with a ``COMPLETE`` marker file written last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "COMPLETE_MARKER",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_path",
    "is_complete",
    "mark_complete",
    "read_json",
    "sha256_file",
]

COMPLETE_MARKER = "COMPLETE"


def fsync_path(path: str | Path) -> None:
    """``fsync`` a file or a directory (a directory: so a rename or link in it is durable).

    Best effort, like every caller needs it: a path that cannot be opened, or a file system
    that cannot ``fsync`` a directory, is passed over silently.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask() can only be read by setting it, which is not thread-safe.
_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; the parent directory is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (keys sorted, so hashes are stable)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; errors name the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from None


def sha256_file(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def mark_complete(directory: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write the ``COMPLETE`` marker (JSON) into ``directory``; call it last."""
    return atomic_write_json(Path(directory) / COMPLETE_MARKER, info or {})


def is_complete(directory: str | Path) -> bool:
    """True when ``directory`` holds a ``COMPLETE`` marker."""
    return (Path(directory) / COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Fill a directory under a temporary name and move it to ``path`` when done.

    Yields the temporary directory.  On success a ``COMPLETE`` marker is written and the
    directory is renamed to ``path``; on error the temporary directory is removed and
    ``path`` is untouched.  Readers should check :func:`is_complete`.

    The directory is locked (:class:`cm3leon.core.locks.DirectoryLock`) for the whole
    fill, and the final rename re-checks that ``path`` did not appear meanwhile, so two
    writers can never silently replace each other's finished output.

    Raises:
        FileExistsError: ``path`` exists (at the start, or appeared by the end) and
            ``overwrite`` is false.
        cm3leon.core.locks.DirectoryLockedError: another process is writing ``path``.
    """
    from cm3leon.core.locks import DirectoryLock

    path = Path(path)
    with DirectoryLock(path):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
        try:
            yield tmp
            if not is_complete(tmp):
                mark_complete(tmp)
            _move_into_place(tmp, path, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``path``, re-checking that nobody created ``path`` meanwhile."""
    if path.exists():
        if not overwrite:
            raise FileExistsError(
                f"{path}: appeared while this output was being written (a writer that does not take "
                "cm3leon's directory lock?); refusing to replace it"
            )
        trash = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, trash)
        os.replace(tmp, path)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, path)
    fsync_path(path.parent)
