"""The ``parquet`` and ``hf`` sources: caption-image tables.

Both read rows of columns and turn each into a ``caption, image`` document the same way
(:class:`RowReader`).  The image is, in this order of preference:

* encoded bytes in ``image_column`` (img2dataset's parquet output has ``jpg``), or a
  Hugging Face ``Image`` cell (a ``{"bytes", "path"}`` struct; its ``path`` is used when
  it has no bytes), decoded by core's hardened loader;
* a path or URL in ``path_column``, resolved against ``image_root`` (a relative path; a
  URL maps to ``image_root/<host>/<path>``, never fetched; see
  :func:`cm3leon.core.corpora.common.resolve_image_reference`).

A row with an img2dataset ``status`` other than ``success`` (a failed download: ``jpg`` is
null) is a bad sample named with its ``error_message``.

``parquet`` streams row groups with ``pyarrow`` (``batch_size`` rows in memory at a time,
only the columns it needs).  ``hf`` reads a ``datasets`` ``save_to_disk`` folder with
``datasets.load_from_disk`` (memory-mapped Arrow, images left undecoded until this reader
decodes them, so one corrupt image is one bad row) or, given parquet files (what the Hub
serves), reads them as ``parquet`` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.corpora.common import (
    SkippingSource,
    check_options,
    expand_files,
    is_url,
    pair_document,
    read_caption,
    require,
    resolve_image_reference,
)
from cm3leon.core.documents import Document

__all__ = ["HFSource", "ParquetSource", "RowReader", "hf_source", "parquet_source"]

#: Column names tried, in order, when ``image_column`` / ``caption_column`` are not given.
IMAGE_COLUMNS = ("jpg", "png", "webp", "image", "img")
CAPTION_COLUMNS = ("caption", "txt", "text")
_PARQUET_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class RowReader:
    """How a row becomes a document: which columns hold what.

    Attributes:
        source: the source name (in meta and errors).
        caption: the caption column.
        image: the image column (bytes or an ``{"bytes", "path"}`` struct), or ``None``.
        path: the path/URL column, or ``None``.
        id: the id column, or ``None`` (ids are ``<file or split>/<row>``).
        image_root: where relative paths and mirrored URLs live.
        base: directory relative paths resolve against without ``image_root``.
        caption_first: ``caption, image`` order.
    """

    source: str
    caption: str
    image: str | None
    path: str | None
    id: str | None
    image_root: str | None
    base: Path
    caption_first: bool

    @classmethod
    def for_columns(cls, source: str, names: list[str], where: str, *, caption_column: str | None,
                    image_column: str | None, path_column: str | None, id_column: str | None,
                    image_root: str | None, base: Path, caption_first: bool) -> RowReader:  # fmt: skip
        """Pick and check the columns of a table with column ``names``.

        Raises:
            ValueError: naming ``where`` and the columns it has, when a column is missing.
        """
        def pick(given: str | None, defaults: tuple[str, ...], what: str) -> str | None:
            if given is not None:
                if given not in names:
                    raise ValueError(f"{where}: no {what} column {given!r}; columns: {names}")
                return given
            return next((c for c in defaults if c in names), None)

        caption = pick(caption_column, CAPTION_COLUMNS, "caption")
        if caption is None:
            raise ValueError(f"{where}: no caption column (tried {list(CAPTION_COLUMNS)}; "
                             f"set caption_column); columns: {names}")  # fmt: skip
        path = pick(path_column, (), "path")
        image = pick(image_column, () if path else IMAGE_COLUMNS, "image")
        if image is None and path is None:
            raise ValueError(f"{where}: no image column (tried {list(IMAGE_COLUMNS)}; set image_column, "
                             f"or path_column with image_root); columns: {names}")  # fmt: skip
        ident = pick(id_column, ("key",), "id")
        return cls(source, caption, image, path, ident, image_root, base, caption_first)

    @property
    def columns(self) -> list[str]:
        """The columns this reader needs (plus img2dataset's status ones when present)."""
        return list(dict.fromkeys(c for c in (self.caption, self.image, self.path, self.id) if c is not None))

    def document(self, row: Mapping[str, Any], where: str, default_id: str, meta: dict[str, Any]) -> Document:
        """The document of one row (errors name ``where``)."""
        status = row.get("status")
        if isinstance(status, str) and status != "success":
            raise ValueError(f"{where}: img2dataset status {status!r}: {row.get('error_message') or 'no image'}")
        caption = read_caption(row.get(self.caption), where)
        image = self._image(row, where)
        ident = row.get(self.id) if self.id is not None else None
        if self.id is not None and (ident is None or str(ident) == ""):
            raise ValueError(f"{where}: empty id in column {self.id!r}")
        return pair_document(caption, image, where=where, id=str(ident) if ident is not None else default_id,
                             meta={"source": self.source, **meta}, caption_first=self.caption_first)  # fmt: skip

    def _image(self, row: Mapping[str, Any], where: str) -> Any:
        cell = row.get(self.image) if self.image is not None else None
        if isinstance(cell, Mapping):  # a Hugging Face Image struct {"bytes", "path"}
            cell = cell.get("bytes") or cell.get("path")
        if isinstance(cell, (bytes, bytearray)) and cell:
            return bytes(cell)
        reference = cell if isinstance(cell, str) and cell else None
        if reference is None and self.path is not None:
            reference = row.get(self.path)
        if isinstance(reference, str) and reference:
            return resolve_image_reference(reference, self.image_root, self.base, where)
        if cell is not None and not isinstance(cell, (bytes, bytearray, str)):
            raise ValueError(f"{where}: image cell must be bytes or a path, got {type(cell).__name__}")
        wanted = " or ".join(repr(c) for c in (self.image, self.path) if c is not None)
        raise ValueError(f"{where}: missing image (column {wanted} is empty)")


def _reader_options(source: str, unknown: dict[str, Any], values: dict[str, Any], extra: tuple[str, ...]) -> None:
    types: dict[str, tuple[type, ...]] = {
        "skip_bad": (bool,), "caption_first": (bool,), "caption_column": (str, type(None)),
        "image_column": (str, type(None)), "path_column": (str, type(None)), "id_column": (str, type(None)),
        "image_root": (str, type(None)), "batch_size": (int,),
    }  # fmt: skip
    if "split" in extra:
        types["split"] = (str, type(None))
    check_options(source, unknown, types, types, values)
    if values["batch_size"] < 1:
        raise ValueError(f"source {source!r}: option batch_size must be >= 1, got {values['batch_size']}")


class ParquetSource(SkippingSource):
    """Caption-image documents from parquet files, streamed ``batch_size`` rows at a time."""

    def __init__(self, path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
                 caption_column: str | None = None, image_column: str | None = None,
                 path_column: str | None = None, id_column: str | None = None,
                 image_root: str | None = None, batch_size: int = 256, name: str = "parquet") -> None:  # fmt: skip
        super().__init__(skip_bad)
        self.name = name
        self.files = expand_files(path, _PARQUET_SUFFIXES, name)
        self.root = Path(path) if Path(path).is_dir() else None
        self.columns = {"caption_column": caption_column, "image_column": image_column,
                        "path_column": path_column, "id_column": id_column}  # fmt: skip
        self.image_root = image_root
        self.caption_first = caption_first
        self.batch_size = batch_size

    def parts(self, size: int) -> list[tuple[str, ParquetSource]]:
        """One part per parquet file, in reading order (parallel preparation; ``size`` is
        unused: a file is the unit of work)."""
        return [(self._label(file), self._part(files=[file])) for file in self.files]

    def _label(self, file: Path) -> str:
        return (file.relative_to(self.root) if self.root else Path(file.name)).with_suffix("").as_posix()

    def __iter__(self) -> Iterator[Document]:
        pq = require("pyarrow.parquet", self.name)
        for file in self.files:
            try:
                table = pq.ParquetFile(file)
            except Exception as err:  # pyarrow raises several types for a file that is not parquet
                self._bad(str(file), ValueError(f"{file}: not a readable parquet file: {err}"))
                continue
            names = table.schema_arrow.names
            reader = RowReader.for_columns(self.name, names, str(file), image_root=self.image_root,
                                           base=file.parent, caption_first=self.caption_first, **self.columns)
            columns = reader.columns + [c for c in ("status", "error_message") if c in names]
            label = self._label(file)
            row = 0
            for batch in table.iter_batches(batch_size=self.batch_size, columns=columns):
                for values in batch.to_pylist():
                    where = f"{file} row {row}"
                    try:
                        yield reader.document(values, where, f"{label}/{row}", {"file": file.name, "row": row})
                    except ValueError as err:
                        self._bad(where, err)
                    row += 1


def parquet_source(path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
                   caption_column: str | None = None, image_column: str | None = None,
                   path_column: str | None = None, id_column: str | None = None,
                   image_root: str | None = None, batch_size: int = 256, **unknown: Any) -> ParquetSource:  # fmt: skip
    """Factory of the ``parquet`` source.

    Args:
        path: a ``.parquet`` file, a folder of them (recursive), or a glob/brace pattern.
        skip_bad: skip (and list in ``skipped``) bad rows and unreadable files.
        caption_first: ``caption, image`` documents (else ``image, caption``).
        caption_column: default: the first of ``caption``, ``txt``, ``text`` present.
        image_column: encoded image bytes (or an HF ``Image`` struct); default: the first of
            ``jpg``, ``png``, ``webp``, ``image``, ``img`` present, unless ``path_column`` is given.
        path_column: a column of image paths or URLs, resolved against ``image_root``.
        id_column: document ids; default ``key`` when present (img2dataset), else ``<file>/<row>``.
        image_root: the folder of local images for ``path_column`` (default: the file's folder).
        batch_size: rows decoded from parquet at a time.
    """
    _reader_options("parquet", unknown, locals(), ())
    return ParquetSource(path, skip_bad=skip_bad, caption_first=caption_first, caption_column=caption_column,
                         image_column=image_column, path_column=path_column, id_column=id_column,
                         image_root=image_root, batch_size=batch_size)  # fmt: skip


class HFSource(SkippingSource):
    """Caption-image documents from a ``datasets`` ``save_to_disk`` folder."""

    def __init__(self, path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
                 caption_column: str | None = None, image_column: str | None = None,
                 path_column: str | None = None, id_column: str | None = None,
                 image_root: str | None = None, split: str | None = None) -> None:  # fmt: skip
        super().__init__(skip_bad)
        self.path = Path(path)
        self.split = split
        self.columns = {"caption_column": caption_column, "image_column": image_column,
                        "path_column": path_column, "id_column": id_column}  # fmt: skip
        self.image_root = image_root
        self.caption_first = caption_first
        self.dataset, self.label = self._load()
        self.rows: tuple[int, int] | None = None  # [start, end) rows of a part

    def _load(self) -> tuple[Any, str]:
        datasets = require("datasets", "hf")
        try:
            loaded = datasets.load_from_disk(str(self.path))
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"{self.path}: not a datasets save_to_disk folder: {err}") from None
        if isinstance(loaded, datasets.DatasetDict):
            splits = sorted(loaded)
            if self.split is None and len(splits) != 1:
                raise ValueError(f"{self.path}: a DatasetDict with splits {splits}; choose one with -o split=NAME")
            name = self.split or splits[0]
            if name not in loaded:
                raise ValueError(f"{self.path}: no split {name!r}; splits: {splits}")
            loaded = loaded[name]
        elif self.split is not None:
            raise ValueError(f"{self.path}: a single Dataset has no splits; drop split={self.split!r}")
        else:
            name = self.path.name
        for column, feature in loaded.features.items():  # decode images here, one row at a time
            if isinstance(feature, datasets.Image) and feature.decode:
                loaded = loaded.cast_column(column, datasets.Image(decode=False))
        return loaded, name

    def __len__(self) -> int:
        start, end = self.rows or (0, len(self.dataset))
        return end - start

    def parts(self, size: int) -> list[tuple[str, HFSource]]:
        """Runs of ``size`` rows, in reading order (parallel preparation)."""
        n = len(self.dataset)
        return [(f"{self.label} rows {a}:{min(a + size, n)}", self._part(rows=(a, min(a + size, n))))
                for a in range(0, n, size)]  # fmt: skip

    def __iter__(self) -> Iterator[Document]:
        names = list(self.dataset.column_names)
        if self.columns["image_column"] is None and self.columns["path_column"] is None:
            image_features = [c for c, f in self.dataset.features.items() if type(f).__name__ == "Image"]
            columns = {**self.columns, "image_column": image_features[0] if image_features else None}
        else:
            columns = self.columns
        reader = RowReader.for_columns("hf", names, str(self.path), image_root=self.image_root,
                                       base=self.path, caption_first=self.caption_first, **columns)  # fmt: skip
        view = self.dataset.select_columns(reader.columns + [c for c in ("status", "error_message") if c in names])
        start = 0
        if self.rows is not None:
            start = self.rows[0]
            view = view.select(range(*self.rows))
        for row, values in enumerate(view, start=start):
            where = f"{self.path} row {row}"
            try:
                yield reader.document(values, where, f"{self.label}/{row}", {"row": row})
            except ValueError as err:
                self._bad(where, err)


def hf_source(path: str | Path, *, skip_bad: bool = False, caption_first: bool = True,
              caption_column: str | None = None, image_column: str | None = None,
              path_column: str | None = None, id_column: str | None = None,
              image_root: str | None = None, split: str | None = None, batch_size: int = 256,
              **unknown: Any) -> HFSource | ParquetSource:  # fmt: skip
    """Factory of the ``hf`` source.

    Args:
        path: a ``datasets`` ``save_to_disk`` folder (a ``Dataset``, or a ``DatasetDict``
            with ``split``), or Hugging Face parquet files (a file, a folder of them, a pattern).
        split: the split of a ``DatasetDict`` (default: its only split).
        batch_size: rows decoded at a time (parquet files).
        Other options as :func:`parquet_source`; the image column defaults to the first
        column with the ``datasets.Image`` feature.
    """
    _reader_options("hf", unknown, locals(), ("split",))
    columns = {"caption_column": caption_column, "image_column": image_column, "path_column": path_column,
               "id_column": id_column, "image_root": image_root}  # fmt: skip
    local = Path(str(path))
    if is_url(str(path)):
        raise ValueError(f"source 'hf': {path} is a URL; this source reads local files only (a save_to_disk "
                         f"folder or parquet files); download them first")  # fmt: skip
    if local.is_file() or "*" in str(path) or "{" in str(path) or (
        local.is_dir() and not any((local / n).is_file() for n in ("state.json", "dataset_dict.json"))
    ):
        if split is not None:
            raise ValueError(f"source 'hf': {path} are parquet files; split applies to save_to_disk folders")
        return ParquetSource(path, skip_bad=skip_bad, caption_first=caption_first, batch_size=batch_size,
                             name="hf", **columns)  # fmt: skip
    return HFSource(path, skip_bad=skip_bad, caption_first=caption_first, split=split, **columns)
