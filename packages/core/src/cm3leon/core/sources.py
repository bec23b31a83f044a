"""Raw-data readers for ``cm3leon data prepare --source NAME PATH``.

A source is ``factory(path, **options) -> iterable of Document`` registered with a
:class:`cm3leon.core.registry.SourceSpec`.  Built-ins:

``folder``
    Image files (``.png .jpg .jpeg .bmp .gif .webp .tif .tiff``, searched recursively,
    sorted) each with a same-stem ``.txt`` caption next to it -> ``caption, image``
    documents (Figure 8 order) with id = the image path relative to ``PATH`` without suffix.
    A folder with no images but ``.tar`` / ``.parquet`` / ``.tsv`` / ``.arrow`` files is
    refused, naming the source that reads it (:mod:`cm3leon.core.corpora`).
``jsonl``
    One JSON object per line: ``{"image": "rel/or/abs.png", "caption": "...", "id": ...,
    "codes": [...]}`` (``image`` and/or precomputed VQ ``codes``) or a full document in
    :meth:`Document.to_json` form (a ``"segments"`` list).  Relative image paths are
    resolved against the JSONL file's directory.

Images are read by core's one hardened loader (:func:`cm3leon.core.images.load_image`:
decompression bombs refused, transparency blended onto white, 16-bit images rescaled).
Bad input (unreadable, corrupt or oversized image, missing or empty caption, malformed line) raises
``ValueError`` naming the file (and line).  With ``skip_bad=True`` the item is skipped
instead and recorded in the source's ``skipped`` list as ``(where, reason)``, so the
caller can report how many were lost; nothing is lost silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from cm3leon.core.corpora.common import SkippingSource, line_ranges
from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.images import load_image

__all__ = ["IMAGE_SUFFIXES", "FolderSource", "JsonlSource", "folder_source", "jsonl_source"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class _SkippingSource(SkippingSource):
    """Skip bookkeeping of a source reading ``path``."""

    def __init__(self, path: str | Path, skip_bad: bool) -> None:
        super().__init__(skip_bad)
        self.path = Path(path)


class FolderSource(_SkippingSource):
    """Image + same-stem ``.txt`` caption pairs from a directory tree."""

    def __init__(self, path: str | Path, *, skip_bad: bool = False, caption_first: bool = True) -> None:
        super().__init__(path, skip_bad)
        if not self.path.is_dir():
            raise ValueError(f"{self.path}: folder source needs a directory")
        self.caption_first = caption_first
        self.images = sorted(
            p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.images:
            _hint_other_source(self.path)

    def __len__(self) -> int:
        return len(self.images)

    def parts(self, size: int) -> list[tuple[str, FolderSource]]:
        """Runs of ``size`` images, in reading order (parallel preparation)."""
        runs = [self.images[i: i + size] for i in range(0, len(self.images), size)]
        return [(f"{self.path.name} images {run[0].relative_to(self.path).as_posix()} .. "
                 f"{run[-1].relative_to(self.path).as_posix()} ({len(run)})", self._part(images=run))
                for run in runs]  # fmt: skip

    def __iter__(self) -> Iterator[Document]:
        for image_path in self.images:
            try:
                yield self._document(image_path)
            except ValueError as err:
                self._bad(str(image_path), err)

    def _document(self, image_path: Path) -> Document:
        caption_path = image_path.with_suffix(".txt")
        if not caption_path.is_file():
            raise ValueError(f"{image_path}: no caption file {caption_path.name} next to it")
        try:
            caption = caption_path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as err:
            raise ValueError(f"{caption_path}: caption is not UTF-8: {err}") from None
        if not caption:
            raise ValueError(f"{caption_path}: empty caption")
        image = ImageSegment(image=load_image(image_path))
        rel = image_path.relative_to(self.path).with_suffix("").as_posix()
        segments = (TextSegment(caption), image) if self.caption_first else (image, TextSegment(caption))
        return Document(segments, id=rel, meta={"source": "folder", "image": image_path.relative_to(self.path).as_posix()})


#: Files that mean a folder holds a corpus for another source: suffix -> source name.
_CORPUS_SUFFIXES = {".tar": "webdataset", ".tar.gz": "webdataset", ".tgz": "webdataset",
                    ".parquet": "parquet", ".arrow": "hf", ".tsv": "tsv"}  # fmt: skip


def _hint_other_source(folder: Path) -> None:
    """Raise, naming the right ``--source``, when an image-less folder holds another corpus format."""
    found: dict[str, int] = {}
    for p in folder.rglob("*"):
        suffix = next((s for s in _CORPUS_SUFFIXES if p.name.lower().endswith(s)), None)
        if suffix is not None and p.is_file():
            found[suffix] = found.get(suffix, 0) + 1
    if not found:
        return
    # img2dataset's webdataset output has a metadata .parquet next to every .tar: the tars win.
    suffix = max(found, key=lambda s: (_CORPUS_SUFFIXES[s] == "webdataset", found[s]))
    name = _CORPUS_SUFFIXES[suffix]
    raise ValueError(f"{folder}: no image files, but {found[suffix]} {suffix} file(s): "
                     f"use `cm3leon data prepare --source {name} {folder}` (the folder source reads "
                     f"image files with same-stem .txt captions)")  # fmt: skip


class JsonlSource(_SkippingSource):
    """Caption-image records or full documents, one JSON object per line."""

    def __init__(self, path: str | Path, *, skip_bad: bool = False, caption_first: bool = True) -> None:
        super().__init__(path, skip_bad)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: jsonl source needs a file")
        self.caption_first = caption_first
        self.lines: tuple[int, int] | None = None  # [start, end) line numbers of a part

    def parts(self, size: int) -> list[tuple[str, JsonlSource]]:
        """Runs of ``size`` lines, in reading order (parallel preparation)."""
        return [(f"{self.path.name} lines {a}:{b}", self._part(lines=(a, b))) for a, b in line_ranges(self.path, size)]

    def __iter__(self) -> Iterator[Document]:
        start, end = self.lines or (1, None)
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if end is not None and number >= end:
                    break
                if number < start or not raw.strip():
                    continue
                where = f"{self.path}:{number}"
                try:
                    yield self._document(raw, where, number)
                except ValueError as err:
                    self._bad(where, err)

    def _document(self, raw: bytes, where: str, number: int) -> Document:
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{where}: not valid JSON: {err}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if "segments" in record:
            doc = Document.from_json(record, source=where)
            return doc if doc.id else doc.replace(id=str(number))
        caption = record.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"{where}: 'caption' must be a non-empty string")
        if "image" not in record and "codes" not in record:
            raise ValueError(f"{where}: needs 'image' (a path) and/or 'codes' (VQ codes)")
        image = None
        if "image" in record:
            if not isinstance(record["image"], str):
                raise ValueError(f"{where}: 'image' must be a path string")
            image_path = Path(record["image"])
            image = load_image(image_path if image_path.is_absolute() else self.path.parent / image_path)
        codes = record.get("codes")
        if codes is not None and (
            not isinstance(codes, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes)
        ):
            raise ValueError(f"{where}: 'codes' must be a list of integers")
        segment = ImageSegment(image=image, codes=tuple(codes) if codes is not None else None)
        text = TextSegment(caption.strip())
        segments = (text, segment) if self.caption_first else (segment, text)
        ident = str(record.get("id", number))
        return Document(segments, id=ident, meta={"source": "jsonl", "line": number})


def folder_source(path: str | Path, *, skip_bad: bool = False, caption_first: bool = True) -> FolderSource:
    """Factory of the ``folder`` source."""
    return FolderSource(path, skip_bad=skip_bad, caption_first=caption_first)


def jsonl_source(path: str | Path, *, skip_bad: bool = False, caption_first: bool = True) -> JsonlSource:
    """Factory of the ``jsonl`` source."""
    return JsonlSource(path, skip_bad=skip_bad, caption_first=caption_first)
