"""The ``webdataset`` source: tar shards in the img2dataset layout.

A sample is the run of consecutive tar members sharing a key, split as the webdataset
library splits them (``dir/000010005.jpg`` -> key ``dir/000010005``, extension ``jpg``;
the extension is everything after the first dot of the file name, lower-cased; members
named ``__*__`` are metadata and skipped).  img2dataset writes, per sample,
``<key>.jpg`` (or ``.png`` / ``.webp`` with ``--encode_format``), ``<key>.txt`` (the
caption) and ``<key>.json`` (url, status, sizes, ...).

The shards are read with Python's :mod:`tarfile` in stream mode (one member in memory at a
time; ``.tar.gz`` too); brace patterns need ``braceexpand`` (installed with
``cm3leon-core[corpora]``).  Remote shards (``s3://``, ``gs://``, ``https://``) are not
read: the error says to copy them to a local folder first.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.corpora.common import (
    SkippingSource,
    check_options,
    expand_files,
    pair_document,
    read_caption,
)
from cm3leon.core.documents import Document

__all__ = ["IMAGE_EXTENSIONS", "TAR_SUFFIXES", "WebDatasetSource", "split_key", "webdataset_source"]

#: Extensions tried, in order, for a sample's image when ``image_key`` is not given.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext
_META = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta


def split_key(name: str) -> tuple[str, str] | None:
    """``(key, extension)`` of a tar member name as webdataset splits it; ``None``: no extension."""
    match = _KEY.match(name)
    return (match.group(1), match.group(2).lower()) if match else None


def _label(shard: Path, root: Path | None) -> str:
    """The shard's name in document ids: relative to the folder given, without its suffix."""
    rel = shard.relative_to(root).as_posix() if root is not None else shard.name
    for suffix in TAR_SUFFIXES:
        if rel.lower().endswith(suffix):
            return rel[: -len(suffix)]
    return rel


class WebDatasetSource(SkippingSource):
    """Caption-image documents from webdataset tar shards (see the module docstring)."""

    def __init__(self, path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
                 image_key: str | None = None, caption_key: str = "txt") -> None:  # fmt: skip
        super().__init__(skip_bad)
        self.path = path
        self.shards = expand_files(path, TAR_SUFFIXES, "webdataset")
        self.root = Path(path) if Path(path).is_dir() else None
        self.caption_first = caption_first
        self.image_keys = (image_key.lower().lstrip("."),) if image_key else IMAGE_EXTENSIONS
        self.caption_key = caption_key.lower().lstrip(".")

    def __iter__(self) -> Iterator[Document]:
        for shard in self.shards:
            try:
                for key, files in self._samples(shard):
                    where = f"{shard}:{key}"
                    try:
                        yield self._document(shard, key, files, where)
                    except ValueError as err:
                        self._bad(where, err)
            except (tarfile.TarError, EOFError, OSError) as err:
                self._bad(str(shard), ValueError(f"{shard}: unreadable tar shard: {err}"))

    def _samples(self, shard: Path) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(key, {extension: bytes | error})`` of each sample, in tar order."""
        key: str | None = None
        files: dict[str, Any] = {}
        with tarfile.open(shard, mode="r|*") as stream:
            for member in stream:
                parts = split_key(member.name) if member.isreg() and not _META.match(member.name) else None
                if parts is None:
                    continue
                if parts[0] != key:
                    if key is not None:
                        yield key, files
                    key, files = parts[0], {}
                fh = stream.extractfile(member)
                data = fh.read() if fh is not None else b""
                # Two members with one key and extension: the sample is ambiguous (webdataset raises too).
                files[parts[1]] = ValueError(f"duplicate file {member.name}") if parts[1] in files else data
                stream.members = []  # stream mode: keep no member list in memory
        if key is not None:
            yield key, files

    def _document(self, shard: Path, key: str, files: dict[str, Any], where: str) -> Document:
        errors = [str(v) for v in files.values() if isinstance(v, ValueError)]
        if errors:
            raise ValueError(f"{where}: {'; '.join(errors)}")
        ext = next((e for e in self.image_keys if e in files), None)
        if ext is None:
            wanted = "/".join(f".{e}" for e in self.image_keys)
            raise ValueError(f"{where}: no image ({wanted}); the sample has {sorted(files)}")
        if self.caption_key not in files:
            raise ValueError(f"{where}: missing caption (no .{self.caption_key}); the sample has {sorted(files)}")
        caption = read_caption(files[self.caption_key], where)
        meta: dict[str, Any] = {"source": "webdataset", "shard": shard.name, "key": key}
        if "json" in files:
            try:
                info = json.loads(files["json"].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{where}: .json is not valid JSON: {err}") from None
            if isinstance(info, dict) and isinstance(info.get("url"), str):
                meta["url"] = info["url"]
        return pair_document(caption, files[ext], where=f"{where}.{ext}", id=f"{_label(shard, self.root)}/{key}",
                             meta=meta, caption_first=self.caption_first)  # fmt: skip


def webdataset_source(path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
                      image_key: str | None = None, caption_key: str = "txt", **unknown: Any) -> WebDatasetSource:
    """Factory of the ``webdataset`` source.

    Args:
        path: a ``.tar`` shard, a folder of them (recursive), or a glob/brace pattern
            (``shards/{00000..00099}.tar``).
        skip_bad: skip (and list in ``skipped``) bad samples and unreadable shards.
        caption_first: ``caption, image`` documents (else ``image, caption``).
        image_key: the image's extension (default: the first of :data:`IMAGE_EXTENSIONS` present).
        caption_key: the caption's extension.
    """
    check_options("webdataset", unknown, ("skip_bad", "caption_first", "image_key", "caption_key"),
                  {"skip_bad": (bool,), "caption_first": (bool,), "image_key": (str, type(None)),
                   "caption_key": (str,)}, locals())  # fmt: skip
    return WebDatasetSource(path, skip_bad=skip_bad, caption_first=caption_first, image_key=image_key,
                            caption_key=caption_key)  # fmt: skip
