"""The ``tsv`` source: caption + image path/URL per line, the CC3M / CC12M layout.

CC3M's ``Train_GCC-training.tsv`` is ``caption<TAB>url`` with no header (the defaults);
CC12M's ``cc12m.tsv`` is ``url<TAB>caption`` (``-o caption_column=1 -o image_column=0``).
With ``header=true`` the first line names the columns and the column options may be names.

URLs are never fetched: a URL maps to the mirror layout ``image_root/<host>/<path>`` (what
``wget -x`` writes), and a row whose image has no local file is a bad sample, named
``FILE:LINE``.  A relative path is resolved against ``image_root`` (default: the TSV's folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.corpora.common import (
    SkippingSource,
    check_options,
    expand_files,
    line_ranges,
    pair_document,
    read_caption,
    resolve_image_reference,
)
from cm3leon.core.documents import Document

__all__ = ["TsvSource", "tsv_source"]


class TsvSource(SkippingSource):
    """Caption-image documents from tab-separated lines (see the module docstring)."""

    def __init__(self, path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
                 caption_column: int | str = 0, image_column: int | str = 1, header: bool = False,
                 image_root: str | None = None) -> None:  # fmt: skip
        super().__init__(skip_bad)
        self.files = expand_files(path, (".tsv",), "tsv")
        self.root = Path(path) if Path(path).is_dir() else None
        self.caption_first = caption_first
        self.caption_column, self.image_column = caption_column, image_column
        self.header = header
        self.image_root = image_root
        self.lines: tuple[int, int] | None = None  # [start, end) line numbers of a part (one file)

    def _label(self, file: Path) -> str:
        return (file.relative_to(self.root) if self.root else Path(file.name)).with_suffix("").as_posix()

    def parts(self, size: int) -> list[tuple[str, TsvSource]]:
        """Runs of ``size`` lines of each file, in reading order (parallel preparation)."""
        return [(f"{self._label(file)} lines {a}:{b}", self._part(files=[file], lines=(a, b)))
                for file in self.files for a, b in line_ranges(file, size, first=2 if self.header else 1)]

    def __iter__(self) -> Iterator[Document]:
        start, end = self.lines or (1, None)
        for file in self.files:
            label = self._label(file)
            with file.open("rb") as fh:
                columns = self._header(file, fh.readline()) if self.header else None
                for number, raw in enumerate(fh, start=2 if self.header else 1):
                    if end is not None and number >= end:
                        break
                    if number < start or not raw.strip():
                        continue
                    where = f"{file}:{number}"
                    try:
                        yield self._document(raw, columns, file, number, f"{label}/{number}")
                    except ValueError as err:
                        self._bad(where, err)

    def _index(self, column: int | str, columns: list[str] | None, file: Path) -> int:
        if isinstance(column, int):
            return column
        if columns is None:
            raise ValueError(f"source 'tsv': column {column!r} is a name; names need header=true")
        if column not in columns:
            raise ValueError(f"{file}:1: no column {column!r} in the header {columns}")
        return columns.index(column)

    def _header(self, file: Path, line: bytes) -> list[str]:
        try:
            return line.decode("utf-8").rstrip("\r\n").split("\t")
        except UnicodeDecodeError as err:
            raise ValueError(f"{file}:1: header is not UTF-8: {err}") from None

    def _document(self, raw: bytes, columns: list[str] | None, file: Path, number: int,
                  default_id: str) -> Document:  # fmt: skip
        where = f"{file}:{number}"
        try:
            cells = raw.decode("utf-8").rstrip("\r\n").split("\t")
        except UnicodeDecodeError as err:
            raise ValueError(f"{where}: line is not UTF-8: {err}") from None
        caption_at = self._index(self.caption_column, columns, file)
        image_at = self._index(self.image_column, columns, file)
        if max(caption_at, image_at) >= len(cells):
            raise ValueError(f"{where}: {len(cells)} tab-separated field(s); needs column "
                             f"{max(caption_at, image_at)} (caption {caption_at}, image {image_at})")  # fmt: skip
        caption = read_caption(cells[caption_at], where)
        reference = cells[image_at].strip()
        if not reference:
            raise ValueError(f"{where}: missing image path/URL")
        image = resolve_image_reference(reference, self.image_root, file.parent, where)
        meta: dict[str, Any] = {"source": "tsv", "line": number}
        if "://" in reference:
            meta["url"] = reference
        return pair_document(caption, image, where=where, id=default_id, meta=meta, caption_first=self.caption_first)


def tsv_source(path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
               caption_column: int | str = 0, image_column: int | str = 1, header: bool = False,
               image_root: str | None = None, **unknown: Any) -> TsvSource:  # fmt: skip
    """Factory of the ``tsv`` source.

    Args:
        path: a ``.tsv`` file, a folder of them (recursive), or a glob/brace pattern.
        skip_bad: skip (and list in ``skipped``) bad lines.
        caption_first: ``caption, image`` documents (else ``image, caption``).
        caption_column / image_column: 0-based column indices (names with ``header``).
        header: the first line names the columns.
        image_root: the local image folder (relative paths; URLs as ``<host>/<path>``).
    """
    types: dict[str, tuple[type, ...]] = {"skip_bad": (bool,), "caption_first": (bool,), "header": (bool,),
                                          "caption_column": (int, str), "image_column": (int, str),
                                          "image_root": (str, type(None))}  # fmt: skip
    check_options("tsv", unknown, types, types, locals())
    for name in ("caption_column", "image_column"):
        if isinstance(locals()[name], int) and locals()[name] < 0:
            raise ValueError(f"source 'tsv': option {name} must be >= 0, got {locals()[name]}")
    return TsvSource(path, skip_bad=skip_bad, caption_first=caption_first, caption_column=caption_column,
                     image_column=image_column, header=header, image_root=image_root)  # fmt: skip
