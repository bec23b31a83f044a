"""``python -m cm3leon.core.train`` that SIGKILLs itself at a named point of one checkpoint save.

Usage::

    python tests/core/train/_kill_train.py POINT BATCH CONFIG [key=value ...]

``POINT`` is one of :data:`cm3leon.core.train.composer_checkpoints.SAVE_POINTS`:

* ``before_write``: the hidden ``.partial-ba{BATCH}`` directory exists, nothing written;
* ``mid_write``: the checkpoint is written under its partial name; it is cut to half its
  bytes first (a torn write), then the process dies before the fsync and the rename;
* ``before_latest``: renamed to its final name (committed), ``latest`` not moved yet;
* ``after_latest``: ``latest`` names it.

The kill is a real ``SIGKILL`` of this process (no ``finally``, no ``atexit``), at the
save of batch ``BATCH``, the same way every time -- no polling race.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from cm3leon.core.train.cli import main
from cm3leon.core.train.composer_checkpoints import SAVE_POINTS, AtomicCheckpointSaver


def _tear(path: Path) -> None:
    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        size = file.stat().st_size
        with open(file, "r+b") as fh:
            fh.truncate(size // 2)


def _install(point: str, batch: int) -> None:
    if point not in SAVE_POINTS:
        raise SystemExit(f"POINT must be one of {SAVE_POINTS}, got {point!r}")

    def _reached(self: AtomicCheckpointSaver, where: str, state, path: Path) -> None:  # noqa: ANN001
        if where == point and int(state.timestamp.batch) == batch:
            if where == "mid_write":
                _tear(path)
            os.kill(os.getpid(), signal.SIGKILL)

    AtomicCheckpointSaver._reached = _reached  # type: ignore[method-assign]


if __name__ == "__main__":
    _install(sys.argv[1], int(sys.argv[2]))
    main(sys.argv[3:])
