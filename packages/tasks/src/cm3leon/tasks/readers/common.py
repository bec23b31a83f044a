"""The reader contract and the helpers every reader shares.

Every reader has this signature (it is what ``TaskSpec.reader`` points at and what
``cm3leon data prepare --task NAME PATH`` calls)::

    reader(path, *, split=None, skip_bad=False, stats=None, **options) -> Iterator[record]

* ``path``: a file of the public format or the dataset directory holding it.
* ``split``: the dataset's own split name (``"train2017"``, ``"val"``); ``None`` picks
  the only one present (an error lists them when several are).
* ``skip_bad``: ``False`` (default) raises :class:`RecordError` at the first malformed
  record -- missing key, wrong type, missing or corrupt image -- naming the file and the
  record.  ``True`` skips it, logs a warning and counts it.
* ``stats``: an optional mutable mapping ``str -> int`` (a ``collections.Counter``
  works) that the reader updates in place: ``records`` (yielded), ``skipped`` and
  ``skipped.<reason>`` (e.g. ``skipped.missing_image``).  Entries that the task cannot
  use but that are not malformed (a ScienceQA problem without an image, an image with no
  annotated object) are counted under ``filtered`` and ``filtered.<reason>``.
  A summary is logged at the end either way, so nothing is ever lost silently.
* Problems with the file itself (not found, not JSON, top-level keys missing) always
  raise :class:`FormatError`.

Records are the dicts of :mod:`cm3leon.tasks.records`, with images loaded and
verified as RGB ``PIL.Image`` objects.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cm3leon.tasks.records import RecordError

__all__ = [
    "FormatError",
    "ReadContext",
    "RecordError",
    "entry_field",
    "find_annotation_file",
    "iter_jsonl",
    "load_image",
    "load_json",
    "pick_image_dir",
    "reader",
]

log = logging.getLogger("cm3leon.tasks.readers")

T = TypeVar("T")
_MAX_WARNINGS = 20


class FormatError(ValueError):
    """A dataset file is unusable as a whole (missing, not JSON, wrong top-level shape)."""


@dataclass
class ReadContext:
    """State of one reader call: the skip policy and the counters."""

    source: str
    skip_bad: bool
    stats: MutableMapping[str, int] = field(default_factory=Counter)
    warned: int = 0

    def build(self, make: Callable[[], T]) -> T | None:
        """Run ``make``; count the record, or handle its :class:`RecordError` per policy."""
        record = self.attempt(make)
        if record is not None:
            self._bump("records")
        return record

    def attempt(self, make: Callable[[], T]) -> T | None:
        """Run ``make``; on :class:`RecordError` raise, or (``skip_bad``) count and return None."""
        try:
            return make()
        except RecordError as err:
            if not self.skip_bad:
                raise
            self._bump("skipped", err.reason)
            if self.warned < _MAX_WARNINGS:
                log.warning("skipping bad record: %s", err)
                self.warned += 1
            return None

    def filtered(self, reason: str) -> None:
        """Count an entry the task cannot use although it is well-formed."""
        self._bump("filtered", reason)

    def _bump(self, key: str, reason: str | None = None) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1
        if reason is not None:
            sub = f"{key}.{reason}"
            self.stats[sub] = self.stats.get(sub, 0) + 1

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.stats.items())]
        return f"{self.source}: " + (", ".join(parts) or "no entries")


def reader(fn: Callable[..., Iterable[T]]) -> Callable[..., Iterator[T]]:
    """Give ``fn(path: Path, *, split, ctx, **options)`` the public reader signature."""

    accepted = [n for n in inspect.signature(fn).parameters if n not in ("path", "split", "ctx")]

    @functools.wraps(fn)
    def wrapper(
        path: str | Path,
        *,
        split: str | None = None,
        skip_bad: bool = False,
        stats: MutableMapping[str, int] | None = None,
        **options: Any,
    ) -> Iterator[T]:
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"{fn.__name__}: unknown option(s) {unknown}; accepted: {accepted or 'none'}")
        ctx = ReadContext(str(path), bool(skip_bad), stats if stats is not None else Counter())
        path = Path(path)
        if not path.exists():
            raise FormatError(f"{path}: no such file or directory")
        yield from fn(path, split=split, ctx=ctx, **options)
        skipped = ctx.stats.get("skipped", 0)
        (log.warning if skipped else log.info)("%s finished: %s", fn.__name__, ctx.summary())

    # Show the public signature (not the inner ``ctx`` one) to inspect/help().
    del wrapper.__wrapped__
    return wrapper


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
    """``entry[key]`` checked for presence and type; :class:`RecordError` names ``where``."""
    if not isinstance(entry, Mapping):
        raise RecordError(f"{where}: entry must be an object, got {type(entry).__name__}",
                          reason="wrong_type")  # fmt: skip
    if key not in entry:
        raise RecordError(f"{where}: missing key {key!r}", reason="missing_key")
    value = entry[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise RecordError(
            f"{where}: {key!r} must be {names}, got {type(value).__name__} {value!r:.60}",
            reason="wrong_type",
        )
    if isinstance(value, str) and not value.strip() and str in kinds:
        raise RecordError(f"{where}: {key!r} is empty", reason="empty_text")
    return value


def load_image(path: Path, where: str) -> Any:
    """Open ``path`` fully and return it as RGB; a missing or corrupt file is a RecordError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise RecordError(f"{where}: image file {path} not found", reason="missing_image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise RecordError(f"{where}: image file {path} is corrupt or unreadable: {err}",
                          reason="corrupt_image") from None  # fmt: skip


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


def pick_image_dir(candidates: Sequence[Path], probes: Sequence[Sequence[str]], source: Path) -> Path:
    """The first candidate folder holding the most of the probed images.

    ``probes`` lists, for a few records, the file names an image may have (e.g.
    ``["COCO_val2014_000000000042.jpg", "000000000042.jpg"]``).

    Raises:
        FormatError: no candidate holds any probed image (the message lists the folders).
    """
    best, best_hits = None, 0
    for folder in dict.fromkeys(candidates):
        hits = sum(any((folder / name).is_file() for name in names) for names in probes)
        if hits > best_hits:
            best, best_hits = folder, hits
    if best is None:
        if not probes:
            return candidates[0]
        tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
        raise FormatError(
            f"{source}: cannot find the images (e.g. {probes[0][0]!r}) in any of: {tried}; "
            "pass image_dir=..."
        )
    return best


def first_existing(folder: Path, names: Sequence[str]) -> Path:
    """``folder / name`` for the first name that exists, else for the first name."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return folder / names[0]


def iter_jsonl(path: Path, ctx: ReadContext) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line; a bad line is a RecordError."""
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue

            def parse(text: str = line, n: int = lineno) -> dict:
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as err:
                    raise RecordError(f"{path}: line {n}: not valid JSON: {err}", reason="bad_json") from None
                if not isinstance(obj, dict):
                    raise RecordError(f"{path}: line {n}: must be a JSON object", reason="wrong_type")
                return obj

            obj = ctx.attempt(parse)
            if obj is not None:
                yield lineno, obj
