"""What every public-format module shares: the one error type, JSON/JSONL I/O, field checks.

* :class:`FormatError` -- a file does not follow its public format.  The file-level
  problems (not found, not JSON, top-level keys missing) raise it directly.
* :class:`EntryError` -- a :class:`FormatError` for one malformed entry (a missing key, a
  wrong type); the message names the file and the entry, ``reason`` is a short key
  (``missing_key``, ``wrong_type``, ``bad_json``, ...) that lenient callers count under.
* ``on_error``: readers that parse many entries take an optional callback.  ``None``
  (strict) raises the first :class:`EntryError`; a callback receives each one and the
  entry is left out (the callback may itself raise, e.g. to convert the error).
* Writers: JSON files are written with sorted keys and a final newline, JSONL one
  sorted-key object per line; JPEG images at quality 95 without chroma subsampling.
  Writers create parent folders and write in place (callers that need atomicity fill a
  temporary directory, as the world export does).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

__all__ = [
    "EntryError",
    "FormatError",
    "OnError",
    "checked",
    "entry_field",
    "entry_key",
    "entry_list",
    "find_annotation_file",
    "first_existing",
    "iter_jsonl",
    "load_json",
    "save_jpeg",
    "save_png",
    "write_json",
    "write_jsonl",
    "write_text",
]

T = TypeVar("T")


class FormatError(ValueError):
    """A dataset file does not follow its public format (missing, not JSON, wrong shape)."""


class EntryError(FormatError):
    """One entry of a file is malformed; the message names the file and the entry.

    ``reason`` is a short key (``missing_key``, ``wrong_type``, ``empty_text``,
    ``bad_json``, ``unknown_image``, ...) under which lenient readers count skipped entries.
    """

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


#: Receives each malformed entry of a lenient read; the entry is then left out.
OnError = Callable[[EntryError], None]


def checked(parse: Callable[[], T], on_error: OnError | None) -> T | None:
    """``parse()``; an :class:`EntryError` is raised (``on_error=None``) or handed to ``on_error``."""
    try:
        return parse()
    except EntryError as err:
        if on_error is None:
            raise
        on_error(err)
        return None


# ------------------------------------------------------------------ reading
def load_json(path: Path, expect: type | tuple[type, ...] = dict) -> Any:
    """Parse a JSON file; :class:`FormatError` names the file on any problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, expect):
        kinds = expect if isinstance(expect, tuple) else (expect,)
        want = " or ".join("object" if k is dict else "array" if k is list else k.__name__ for k in kinds)
        raise FormatError(f"{path}: top level must be a JSON {want}, got {type(data).__name__}")
    return data


def entry_field(entry: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``entry[key]`` checked for presence and type; :class:`EntryError` names ``where``.

    A ``bool`` is accepted only where ``bool`` is asked for, and a blank string is an
    ``empty_text`` error where a ``str`` is asked for.
    """
    if not isinstance(entry, Mapping):
        raise EntryError(f"{where}: entry must be an object, got {type(entry).__name__}", reason="wrong_type")
    if key not in entry:
        raise EntryError(f"{where}: missing key {key!r}", reason="missing_key")
    value = entry[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise EntryError(
            f"{where}: {key!r} must be {names}, got {type(value).__name__} {value!r:.60}",
            reason="wrong_type",
        )
    if isinstance(value, str) and not value.strip() and str in kinds:
        raise EntryError(f"{where}: {key!r} is empty", reason="empty_text")
    return value


def entry_list(path: Path, data: Any, key: str) -> list[Any]:
    """``data`` itself if a list, else ``data[key]`` (results files come in both shapes)."""
    if isinstance(data, dict) and key in data:
        data = data[key]
    if not isinstance(data, list):
        raise FormatError(f"{path}: expected a list (or an object with {key!r}), got {type(data).__name__}")
    return data


def entry_key(path: Path, entry: Any, index: int, name: str) -> Any:
    """``entry[name]`` of entry ``index``; a missing key is an :class:`EntryError` naming both."""
    if not isinstance(entry, dict) or name not in entry:
        raise EntryError(f"{path}: entry {index} lacks {name!r}: {str(entry)[:200]}", reason="missing_key")
    return entry[name]


def iter_jsonl(path: Path, on_error: OnError | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSONL file.

    Raises:
        FormatError: the file does not exist.
        EntryError: (``on_error=None``) a line is not JSON or not an object.
    """
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                obj = checked(lambda t=line, n=lineno: _jsonl_object(path, n, t), on_error)
                if obj is not None:
                    yield lineno, obj


def _jsonl_object(path: Path, lineno: int, text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise EntryError(f"{path}: line {lineno}: not valid JSON: {err}", reason="bad_json") from None
    if not isinstance(obj, dict):
        raise EntryError(f"{path}: line {lineno}: must be a JSON object", reason="wrong_type")
    return obj


def find_annotation_file(path: Path, patterns: Sequence[str], split: str | None, what: str) -> Path:
    """Resolve ``path`` (a file, or a directory searched with ``patterns``) to one file.

    ``patterns`` are globs such as ``"captions_*.json"``, tried in ``path`` and
    ``path/annotations``; with ``split`` only names containing it are kept.

    Raises:
        FormatError: nothing matches, or several files match and ``split`` does not decide.
    """
    if path.is_file():
        return path
    found: list[Path] = []
    for folder in (path, path / "annotations"):
        for pattern in patterns:
            found.extend(p for p in sorted(folder.glob(pattern)) if p.is_file())
    found = list(dict.fromkeys(found))
    if split is not None:
        found = [p for p in found if split in p.name]
    if len(found) == 1:
        return found[0]
    if not found:
        wanted = ", ".join(patterns) + (f" containing {split!r}" if split else "")
        raise FormatError(f"{path}: no {what} file ({wanted}) here or in {path / 'annotations'}")
    names = ", ".join(str(p.relative_to(path)) for p in found)
    raise FormatError(f"{path}: several {what} files ({names}); pass split=... to choose one")


def first_existing(folder: Path, names: Sequence[str]) -> Path:
    """``folder / name`` for the first name that exists, else for the first name."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return folder / names[0]


# ------------------------------------------------------------------ writing
def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text, creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    """One JSON document with sorted keys and a final newline."""
    write_text(path, json.dumps(obj, sort_keys=True) + "\n")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """One sorted-key JSON object per line."""
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def save_jpeg(path: Path, image: np.ndarray) -> None:
    """Save uint8 RGB pixels ``(H, W, 3)`` as JPEG (quality 95, 4:4:4: colours stay readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode="RGB").save(path, format="JPEG", quality=95, subsampling=0)


def save_png(path: Path, image: np.ndarray) -> None:
    """Save pixels (uint8 RGB ``(H, W, 3)``, or uint16 single channel ``(H, W)``) as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
