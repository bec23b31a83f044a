"""Checkpoints in an object store (``s3://``, ``gs://``, ``oci://``, ...): upload, pick, download.

A run with ``checkpoint.save_folder: s3://bucket/run/checkpoints`` still saves through
:class:`~cm3leon.core.train.composer_checkpoints.AtomicCheckpointSaver` into a local
staging folder (``<run_dir>/checkpoints``, committed atomically there), then uploads the
committed checkpoint with Composer's object store (:func:`composer.utils.maybe_create_object_store_from_uri`;
``S3_ENDPOINT_URL`` and the ``AWS_*`` credentials come from the environment, never from
the config).

**Commit on the object store.**  S3 has no rename, but a ``PUT`` (or a completed
multipart upload) is atomic: an object is visible whole or not at all.  So:

1. a monolithic checkpoint is uploaded straight to its final key ``ep{E}-ba{B}-rank0.pt``:
   the completed upload *is* the commit;
2. a sharded checkpoint (``ep{E}-ba{B}/``) uploads its ``.distcp`` files first and its
   ``.metadata`` last: the ``.metadata`` object is the commit;
3. then the pointer ``latest-rank0.pt.symlink`` (Composer's convention: a small text
   object holding the checkpoint's key) is written, last.

Which checkpoint to resume is decided as locally (:func:`recover_save_folder`): the
committed checkpoint with the highest batch in a listing of the folder, so a kill between
an upload and the pointer write costs nothing; the pointer is kept for Composer and people.
:func:`pull_newest_checkpoint` downloads that checkpoint into the staging folder
(temporary name + ``os.replace``) before Composer's autoresume looks at ``latest``, so
the loaded file goes through the same checkpoint guard as a local one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "LATEST_POINTER",
    "RemoteFolder",
    "fetch_remote_file",
    "is_remote",
    "pull_newest_checkpoint",
]

log = logging.getLogger(__name__)

#: Composer's remote ``latest`` pointer: a text object holding the checkpoint's key.
LATEST_POINTER = "latest-rank0.pt.symlink"
_COMMITTED = re.compile(r"^ep(?P<epoch>\d+)-ba(?P<batch>\d+)(?P<file>-rank0\.pt|/\.metadata)$")


def is_remote(path: str | os.PathLike[str] | None) -> bool:
    """Whether ``path`` is an object-store URL (``scheme://...``)."""
    return path is not None and "://" in str(path)


class RemoteFolder:
    """A "folder" of an object store: a URL prefix, with Composer's ``ObjectStore`` under it.

    Args:
        uri: ``s3://bucket/prefix`` (or any scheme Composer's
            ``maybe_create_object_store_from_uri`` knows).
    """

    def __init__(self, uri: str) -> None:
        from composer.utils import maybe_create_object_store_from_uri, parse_uri

        self.uri = uri.rstrip("/")
        _, _, prefix = parse_uri(self.uri)
        self.prefix = prefix.strip("/")
        store = maybe_create_object_store_from_uri(self.uri)
        if store is None:
            raise ValueError(f"{uri!r} is not an object-store URL")
        self.store: Any = store

    def key(self, name: str) -> str:
        """The object name of ``name`` inside this folder."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def upload(self, name: str, path: Path) -> None:
        self.store.upload_object(self.key(name), str(path))

    def download(self, name: str, path: Path) -> None:
        self.store.download_object(self.key(name), str(path), overwrite=True)

    def names(self) -> list[str]:
        """Object names under the folder, relative to it."""
        start = len(self.prefix) + 1 if self.prefix else 0
        return [k[start:] for k in self.store.list_objects(self.key(""))]

    def committed(self) -> dict[int, str]:
        """Committed checkpoints by batch: ``ep..-ba..-rank0.pt`` files and ``ep..-ba..``
        directories whose ``.metadata`` (uploaded last) exists."""
        found: dict[int, str] = {}
        for name in self.names():
            match = _COMMITTED.match(name)
            if match:
                found[int(match["batch"])] = name.removesuffix("/.metadata")
        return found

    def upload_checkpoint(self, target: Path) -> None:
        """Upload a committed local checkpoint (file or sharded directory), then the pointer.

        A sharded directory's ``.metadata`` goes last (it commits the directory); the
        pointer object goes after everything (see the module docstring).
        """
        if target.is_dir():
            files = sorted(p for p in target.rglob("*") if p.is_file())
            files.sort(key=lambda p: p.name == ".metadata")  # stable: .metadata last
            for path in files:
                self.upload(f"{target.name}/{path.relative_to(target).as_posix()}", path)
        else:
            self.upload(target.name, target)
        pointer = target.parent / f".{LATEST_POINTER}.{os.getpid()}.tmp"
        pointer.write_text(self.key(target.name))
        try:
            self.upload(LATEST_POINTER, pointer)
        finally:
            pointer.unlink(missing_ok=True)
        log.info("checkpoint uploaded: %s", self.url(target.name))


def _download_checkpoint(remote: RemoteFolder, name: str, folder: Path, partial: Path) -> Path:
    """Download checkpoint ``name`` into ``partial``, then rename it to ``folder/name``."""
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    members = [n for n in remote.names() if n.startswith(f"{name}/")] or [name]
    for member in members:
        dest = partial / member
        dest.parent.mkdir(parents=True, exist_ok=True)
        remote.download(member, dest)
    source = partial / name
    final = folder / name
    os.replace(source, final)  # the local commit: a final name holds a complete checkpoint
    shutil.rmtree(partial, ignore_errors=True)
    return final


def pull_newest_checkpoint(uri: str, folder: str | Path, *, partial_prefix: str = ".partial-") -> Path | None:
    """Make the newest checkpoint committed under ``uri`` a committed checkpoint of ``folder``.

    Downloads it (unless ``folder`` holds it already) under a ``partial_prefix`` name and
    renames it into place; :func:`~cm3leon.core.train.composer_checkpoints.recover_save_folder`
    then points ``latest`` at it.  Call on local rank 0 before anything reads ``latest``.

    Returns:
        The local path of that checkpoint, or ``None`` when ``uri`` holds none.
    """
    folder = Path(folder)
    remote = RemoteFolder(uri)
    committed = remote.committed()
    if not committed:
        return None
    name = committed[max(committed)]
    local = folder / name
    if local.is_file() or (local / ".metadata").is_file():
        return local
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading checkpoint %s to %s", remote.url(name), local)
    return _download_checkpoint(remote, name, folder, folder / f"{partial_prefix}remote-{name}")


def fetch_remote_file(uri: str, dest_dir: str | Path) -> Path:
    """Download one object (``s3://bucket/run/ep0-ba4-rank0.pt``) into ``dest_dir`` atomically.

    Used for an explicit remote ``load_path``: the local copy is then checked and loaded
    like a local file.
    """
    head, _, name = uri.rstrip("/").rpartition("/")
    if not name or "://" not in head:
        raise ValueError(f"{uri!r}: not an object URL")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    remote = RemoteFolder(head)
    names = [n for n in remote.names() if n == name or n.startswith(f"{name}/")]
    if not names:
        raise FileNotFoundError(f"{uri}: checkpoint not found")
    final = dest_dir / name
    if final.is_dir():
        shutil.rmtree(final)
    return _download_checkpoint(remote, name, dest_dir, dest_dir / f".partial-load-{os.getpid()}")
