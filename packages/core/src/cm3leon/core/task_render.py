"""Render SFT task records into documents: the one path every command takes.

``cm3leon tasks mixture`` (the demo's path), ``cm3leon data prepare --task`` and
``cm3leon tasks render`` all call :func:`render_task_records`, so one record renders to
the same document whichever command wrote it.  Record ``r`` of source ``s`` of the
mixture's task ``t`` is rendered with ``numpy.random.default_rng([seed, t, s, r])``
(:func:`record_rng`); a command that reads one task from one path is the mixture's first
task and first source, ``stream=(0, 0)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import numpy as np

from cm3leon.core.documents import Document

__all__ = ["FIRST_STREAM", "record_rng", "render_task_records"]

log = logging.getLogger(__name__)

FIRST_STREAM: tuple[int, int] = (0, 0)  # (task index, source index) of a single-task command


def record_rng(seed: int, stream: tuple[int, ...], index: int) -> np.random.Generator:
    """The generator record ``index`` of ``stream`` (task, source) is rendered with."""
    return np.random.default_rng([int(seed), *map(int, stream), int(index)])


def render_task_records(
    task: Any,
    records: Iterable[dict[str, Any]],
    *,
    name: str,
    seed: int,
    where: str,
    stream: tuple[int, ...] = FIRST_STREAM,
    start: int = 0,
    limit: int | None = None,
    skip_bad: bool = False,
    stats: MutableMapping[str, Any] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> Iterator[Document]:
    """Yield ``task.render(record)`` for each record, seeded by its position.

    Args:
        task: a :class:`cm3leon.core.interfaces.Task`.
        records: the records, e.g. from the task spec's reader.
        name: the registered task name, recorded in ``meta["task"]``.
        seed: the command's seed.
        where: the records' origin (a path) for error messages.
        stream: ``(task index, source index)`` within a mixture.
        start: index of the first record in its source (``tasks render --index``).
        limit: stop after this many records of the source.
        skip_bad: skip records whose rendering raises ``ValueError`` instead of raising.
        stats: counters updated for skipped records (``skipped``, ``skipped.render``).
        skipped: receives ``(where, reason)`` for each skipped record.

    Yields:
        The documents; a document without an id gets the record's ``id`` (else its index).

    Raises:
        ValueError: a record does not render (unless ``skip_bad``), naming ``where``, the
            task and the record id.
    """
    for r, record in enumerate(records):
        if limit is not None and r >= limit:
            break
        index = start + r
        try:
            doc = task.render(record, rng=record_rng(seed, stream, index))
        except ValueError as err:
            rid = record.get("id", index) if isinstance(record, dict) else index
            message = f"{where}: task {name!r}, record {rid!r}: {err}"
            if not skip_bad:
                raise ValueError(message) from err
            if stats is not None:
                stats["skipped"] = stats.get("skipped", 0) + 1
                stats["skipped.render"] = stats.get("skipped.render", 0) + 1
            if skipped is not None:
                skipped.append((f"{where}: task {name!r}, record {rid!r}", str(err)))
            log.warning("skipping record %r of %s: %s", rid, where, err)
            continue
        ident = doc.id or str(record.get("id", index))
        yield doc.replace(id=ident, meta={**doc.meta, "task": name})
