"""What the corpus sources share: option checks, the optional-extra import, file expansion,
local image resolution and the caption-image document they all build.
"""

from __future__ import annotations

import copy
import glob
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cm3leon.core.documents import Document, ImageSegment, TextSegment
from cm3leon.core.images import to_pil_rgb

__all__ = [
    "EXTRA",
    "MissingExtraError",
    "SkippingSource",
    "check_options",
    "expand_files",
    "is_url",
    "line_ranges",
    "pair_document",
    "read_caption",
    "require",
    "resolve_image_reference",
]

#: The optional extra of cm3leon-core that installs the corpus libraries.
EXTRA = "cm3leon-core[corpora]"


class MissingExtraError(ImportError, ValueError):
    """A corpus library is not installed; the message names the extra that installs it.

    A ``ValueError`` too, so ``cm3leon data prepare`` prints it as a one-line error.
    """


def require(module: str, source: str, extra: str = EXTRA) -> Any:
    """Import ``module`` for source ``source`` or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"source {source!r} needs the {module.split('.')[0]!r} library ({err}); "
            f"install it with: pip install '{extra}'"
        ) from None


def check_options(source: str, unknown: dict[str, Any], known: Iterable[str],
                  types: dict[str, tuple[type, ...]], values: dict[str, Any]) -> None:  # fmt: skip
    """Refuse an unknown option (naming it and the known ones) or a value of the wrong type."""
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ValueError(f"source {source!r}: unknown option(s) {names}; known options: {', '.join(sorted(known))}")
    for name, allowed in types.items():
        value = values[name]
        if value is None and type(None) in allowed:
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            kinds = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"source {source!r}: option {name} must be {kinds}, got {value!r}")


def is_url(text: str) -> bool:
    """Whether ``text`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in text and not Path(text).exists()


def expand_files(path: str | Path, suffixes: tuple[str, ...], source: str) -> list[Path]:
    """The local files of ``path``: one file, a folder (searched recursively, sorted), or a
    glob / brace pattern (``shards/{00000..00009}.tar``, ``data/*.parquet``).

    Raises:
        ValueError: a URL, nothing matching, or a brace-expanded name that does not exist.
    """
    text = str(path)
    if is_url(text):
        raise ValueError(
            f"source {source!r}: {text} is a URL; this source reads local files only. Copy the "
            f"shards to a local folder first (e.g. `aws s3 sync`, `gsutil -m cp -r`) and give the folder"
        )
    local = Path(text)
    if local.is_file():
        return [local]
    if local.is_dir():
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
        if not files:
            raise ValueError(f"{local}: no {'/'.join(suffixes)} file in this folder (source {source!r})")
        return files
    names = [text]
    if "{" in text:
        names = list(require("braceexpand", source).braceexpand(text))
    files: list[Path] = []
    for name in names:
        if glob.has_magic(name):
            files.extend(sorted(Path(p) for p in glob.glob(name, recursive=True) if Path(p).is_file()))
        elif Path(name).is_file():
            files.append(Path(name))
        else:
            raise ValueError(f"{name}: no such file (source {source!r}, from {text})")
    if not files:
        raise ValueError(f"{text}: no file matches this pattern (source {source!r})")
    return files


def resolve_image_reference(value: str, image_root: str | Path | None, base: Path, where: str) -> Path:
    """The local image file of a path or URL cell.

    A relative path is resolved against ``image_root`` (else ``base``); an absolute path is
    used as it is.  A URL is never fetched: with ``image_root`` it maps to the mirror layout
    ``image_root/<host>/<path>`` (what ``wget -x`` writes); a URL with no local file there
    is a bad sample.

    Raises:
        ValueError: naming ``where``, when the file does not exist.
    """
    if "://" in value:
        if image_root is None:
            raise ValueError(f"{where}: image is the URL {value}, which cannot be fetched offline; "
                             f"download the images and give image_root (mirror layout <host>/<path>)")  # fmt: skip
        parts = urlsplit(value)
        local = Path(image_root) / parts.netloc / parts.path.lstrip("/")
    else:
        candidate = Path(value)
        local = candidate if candidate.is_absolute() else Path(image_root or base) / candidate
    if not local.is_file():
        raise ValueError(f"{where}: image {value!r} has no local file {local}")
    return local


def read_caption(value: Any, where: str) -> str:
    """A caption cell as stripped text (``bytes`` decoded as UTF-8).

    Raises:
        ValueError: naming ``where``: missing, empty, not text, or not UTF-8.
    """
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{where}: caption is not UTF-8: {err}") from None
    if value is None:
        raise ValueError(f"{where}: missing caption")
    if not isinstance(value, str):
        raise ValueError(f"{where}: caption must be text, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{where}: empty caption")
    return value.strip()


def pair_document(caption: str, image: Any, *, where: str, id: str, meta: dict[str, Any],
                  caption_first: bool) -> Document:  # fmt: skip
    """A ``caption, image`` document (Figure 8 order; ``image, caption`` when not ``caption_first``).

    ``image`` is anything :func:`cm3leon.core.images.to_pil_rgb` reads (encoded bytes, a path,
    a PIL image); its errors name ``where``.
    """
    segment = ImageSegment(image=to_pil_rgb(image, source=where))
    text = TextSegment(caption)
    return Document((text, segment) if caption_first else (segment, text), id=id, meta=meta)


class SkippingSource:
    """Skip bookkeeping: with ``skip_bad`` a bad item is listed in ``skipped`` as ``(where, reason)``.

    Sources that can be prepared in parallel (``cm3leon data prepare --workers N``, see
    :mod:`cm3leon.core.prepare_parallel`) also define ``parts(size)``: ``(label, source)``
    pairs, in reading order, whose documents concatenated are this source's documents;
    each part source has its own ``skipped`` list (:meth:`_part` makes one).
    """

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.skipped: list[tuple[str, str]] = []

    def _bad(self, where: str, err: ValueError) -> None:
        if not self.skip_bad:
            raise err
        self.skipped.append((where, str(err)))

    def _part(self, **narrowed: Any) -> Any:
        """A copy of this source that reads only part of its input (``narrowed``: the attributes
        that select it, e.g. ``shards=[one]``), with an empty ``skipped`` list of its own."""
        part = copy.copy(self)
        part.__dict__.update(narrowed)
        part.skipped = []
        return part


def line_ranges(file: Path, size: int, *, first: int = 1) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of 1-based line numbers, ``size`` lines each, covering ``file``
    from line ``first`` (an empty file, or one with no line from ``first`` on, has none)."""
    if size < 1:
        raise ValueError(f"part size must be >= 1, got {size}")
    count, last = 0, b"\n"
    with open(file, "rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    count += last != b"\n"  # a last line without its newline
    return [(start, min(start + size, count + 1)) for start in range(first, count + 1, size)]
