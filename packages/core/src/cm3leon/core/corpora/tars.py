"""The ``webdataset`` source: tar shards in the img2dataset layout.

A sample is the run of consecutive tar members sharing a key, split as the webdataset
library splits them (``dir/000010005.jpg`` -> key ``dir/000010005``, extension ``jpg``;
the extension is everything after the first dot of the file name, lower-cased; members
named ``__*__`` are metadata and skipped).  img2dataset writes, per sample,
``<key>.jpg`` (or ``.png`` / ``.webp`` with ``--encode_format``), ``<key>.txt`` (the
caption) and ``<key>.json`` (url, status, sizes, ...).

The shards are read with Python's :mod:`tarfile` in stream mode (one member in memory at a
time; ``.tar.gz`` too); brace patterns need ``braceexpand`` (installed with
``cm3leon-core[corpora]``).

Remote shards (``s3://bucket/laion/{00000..00099}.tar``, ``gs://``, ``oci://``, ``hf://``,
... -- every scheme of mosaicml-streaming) are downloaded by the downloader the trainer's
streaming datasets use (``streaming.base.storage.CloudDownloader``, credentials as for
training, ``cm3leon-core[train]``) into ``cache_dir/<scheme>/<host>/<path>``, one shard at
a time just before it is read; a shard already in the cache is not downloaded again
(downloads land under a temporary name, so the cache holds only complete files).  A
remote cannot be listed: give one URL or a brace pattern.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cm3leon.core.corpora.common import (
    SkippingSource,
    check_options,
    expand_files,
    is_url,
    pair_document,
    read_caption,
    require,
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


def remote_shards(pattern: str) -> list[str]:
    """The shard URLs of ``pattern`` (one URL, or a brace pattern ``.../{00000..00099}.tar``).

    Raises:
        ValueError: a glob (a remote cannot be listed).
    """
    urls = list(require("braceexpand", "webdataset").braceexpand(pattern)) if "{" in pattern else [pattern]
    globbed = [u for u in urls if glob.has_magic(urlsplit(u).path)]
    if globbed:
        raise ValueError(f"{globbed[0]}: a remote cannot be listed; name the shards with a brace pattern "
                         f"(e.g. s3://bucket/laion/{{00000..00099}}.tar)")  # fmt: skip
    return urls


def _label(shard: Path | str, root: Path | None) -> str:
    """The shard's name in document ids: relative to the folder given, without its suffix."""
    rel = shard.relative_to(root).as_posix() if isinstance(shard, Path) and root is not None else _name(shard)
    for suffix in TAR_SUFFIXES:
        if rel.lower().endswith(suffix):
            return rel[: -len(suffix)]
    return rel


class _DownloadError(OSError):
    """A remote shard could not be downloaded (a bad shard, named by its URL)."""


def _name(shard: Path | str) -> str:
    return shard.name if isinstance(shard, Path) else urlsplit(shard).path.rsplit("/", 1)[-1]


class WebDatasetSource(SkippingSource):
    """Caption-image documents from webdataset tar shards (see the module docstring)."""

    def __init__(self, path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
                 image_key: str | None = None, caption_key: str = "txt", cache_dir: str | None = None,
                 timeout: float = 60.0) -> None:  # fmt: skip
        super().__init__(skip_bad)
        self.path = path
        self.cache_dir, self.timeout = cache_dir, timeout
        self.shards: list[Path | str]
        if is_url(str(path)):
            if cache_dir is None:
                raise ValueError(f"{path}: remote shards are downloaded before they are read; "
                                 f"give a local cache folder with -o cache_dir=DIR")  # fmt: skip
            self.shards = list(remote_shards(str(path)))
        else:
            self.shards = list(expand_files(path, TAR_SUFFIXES, "webdataset"))
        self.root = Path(path) if not is_url(str(path)) and Path(path).is_dir() else None
        self.caption_first = caption_first
        self.image_keys = (image_key.lower().lstrip("."),) if image_key else IMAGE_EXTENSIONS
        self.caption_key = caption_key.lower().lstrip(".")

    def parts(self, size: int) -> list[tuple[str, WebDatasetSource]]:
        """One part per tar shard, in reading order (parallel preparation; ``size`` is unused:
        a shard is the unit of work)."""
        return [(_label(shard, self.root), self._part(shards=[shard])) for shard in self.shards]

    def __iter__(self) -> Iterator[Document]:
        for shard in self.shards:
            try:
                local = self._fetch(shard) if isinstance(shard, str) else shard
                for key, files in self._samples(local):
                    where = f"{shard}:{key}"
                    try:
                        yield self._document(shard, key, files, where)
                    except ValueError as err:
                        self._bad(where, err)
            except _DownloadError as err:
                self._bad(str(shard), ValueError(f"{shard}: {err}"))
            except (tarfile.TarError, EOFError, OSError) as err:
                self._bad(str(shard), ValueError(f"{shard}: unreadable tar shard: {err}"))

    def _fetch(self, url: str) -> Path:
        """The cached local copy of shard ``url``, downloaded by streaming's downloader if missing."""
        parts = urlsplit(url)
        local = Path(self.cache_dir or ".") / parts.scheme / parts.netloc / parts.path.lstrip("/")
        if local.is_file():
            return local
        storage = require("streaming.base.storage", "webdataset", extra="cm3leon-core[train]")
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
        try:
            downloader = storage.CloudDownloader.get(url)
            downloader.download(url, str(tmp), self.timeout)
            downloader.clean_up()
        except Exception as err:  # each object store raises its own types
            tmp.unlink(missing_ok=True)
            raise _DownloadError(f"cannot download the shard to {local}: {err}") from None
        os.replace(tmp, local)
        return local

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

    def _document(self, shard: Path | str, key: str, files: dict[str, Any], where: str) -> Document:
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
        meta: dict[str, Any] = {"source": "webdataset", "shard": _name(shard), "key": key}
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
                      image_key: str | None = None, caption_key: str = "txt", cache_dir: str | None = None,
                      timeout: float = 60.0, **unknown: Any) -> WebDatasetSource:  # fmt: skip
    """Factory of the ``webdataset`` source.

    Args:
        path: a ``.tar`` shard, a folder of them (recursive), a glob/brace pattern
            (``shards/{00000..00099}.tar``), or a remote URL / brace pattern of URLs.
        skip_bad: skip (and list in ``skipped``) bad samples and unreadable (or undownloadable) shards.
        caption_first: ``caption, image`` documents (else ``image, caption``).
        image_key: the image's extension (default: the first of :data:`IMAGE_EXTENSIONS` present).
        caption_key: the caption's extension.
        cache_dir: where remote shards are downloaded (required for URLs).
        timeout: seconds per shard download.
    """
    types: dict[str, tuple[type, ...]] = {
        "skip_bad": (bool,), "caption_first": (bool,), "image_key": (str, type(None)), "caption_key": (str,),
        "cache_dir": (str, type(None)), "timeout": (int, float),
    }  # fmt: skip
    check_options("webdataset", unknown, types, types, locals())
    return WebDatasetSource(path, skip_bad=skip_bad, caption_first=caption_first, image_key=image_key,
                            caption_key=caption_key, cache_dir=cache_dir, timeout=float(timeout))  # fmt: skip
