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

The formats themselves are parsed by :mod:`cm3leon.core.formats` (one module per
format, readers beside writers); a reader here locates the files and images and maps
the parsed rows to task records.  An :class:`~cm3leon.core.formats.EntryError` of a
format parser is handled like a :class:`RecordError` (raised as one, or counted and
skipped); :class:`FormatError` is core's.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cm3leon.core.formats import common as formats
from cm3leon.core.formats.common import (
    EntryError,
    FormatError,
    entry_field,
    find_annotation_file,
    first_existing,
    load_json,
)
from cm3leon.tasks.records import RecordError

__all__ = [
    "FormatError",
    "ReadContext",
    "RecordError",
    "entry_field",
    "find_annotation_file",
    "first_existing",
    "iter_jsonl",
    "load_image",
    "load_json",
    "pick_image_dir",
    "reader",
]

log = logging.getLogger("cm3leon.tasks.readers")

T = TypeVar("T")
_MAX_WARNINGS = 20


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
        """Run ``make``; on a bad record or entry raise, or (``skip_bad``) count and return None."""
        try:
            return make()
        except (RecordError, EntryError) as err:
            self.reject(err)
            return None

    def reject(self, err: RecordError | EntryError) -> None:
        """Raise ``err`` as a :class:`RecordError`, or (``skip_bad``) count and log it."""
        if not self.skip_bad:
            if isinstance(err, RecordError):
                raise err
            raise RecordError(str(err), reason=err.reason) from err
        self._bump("skipped", err.reason)
        if self.warned < _MAX_WARNINGS:
            log.warning("skipping bad record: %s", err)
            self.warned += 1

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


def load_image(path: Path, where: str) -> Any:
    """Read ``path`` with core's one image loader; a missing or corrupt file is a RecordError."""
    from cm3leon.core.images import ImageInputError
    from cm3leon.core.images import load_image as load_rgb

    try:
        return load_rgb(path)
    except ImageInputError as err:
        if err.reason == "file not found":
            raise RecordError(f"{where}: image file {path} not found", reason="missing_image") from None
        raise RecordError(f"{where}: image file {path} is corrupt or unreadable: {err.reason}",
                          reason="corrupt_image") from None  # fmt: skip


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


def iter_jsonl(path: Path, ctx: ReadContext) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line; a bad line is a bad record."""
    yield from formats.iter_jsonl(path, ctx.reject)
