"""Exclusive locks on output and run directories, held for the life of a command.

Two commands writing the same directory -- two ``cm3leon data prepare --out D``, two
``cm3leon train run`` into one ``run_dir`` -- must not both succeed: the second one fails
at once, naming the process that holds the directory.  :class:`DirectoryLock` takes an
exclusive ``flock`` on a sibling file ``.<name>.lock`` (a sibling, not a file inside,
because an output directory is created and replaced under its final name by
:func:`cm3leon.core.io.atomic_directory`).  The file records the holder (pid, host,
command, start time); a clean release deletes it (while still holding the lock; an
acquirer re-checks after locking that the file it locked is still the one at the path).
The kernel drops the ``flock`` when its process dies, so a lock left by a killed process
never blocks anyone; finding a lock file whose lock is free means its holder died
without releasing -- that is reported (a warning naming the dead pid) and the lock is
taken over.

Locks are advisory and per host: they serialise cm3leon commands on one machine or on a
file system with working ``flock`` (local disks; NFSv4; not every network file system).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DirectoryLock", "DirectoryLockedError", "lock_path_for"]

log = logging.getLogger(__name__)

# Locks this process holds, by lock file: re-entering one (a command that locks its output
# directory and then fills it with ``atomic_directory``) nests instead of deadlocking.
_HELD: dict[tuple[int, Path], int] = {}


class DirectoryLockedError(FileExistsError):
    """Another live process holds the directory; ``holder`` is what its lock file says.

    A :class:`FileExistsError` (the output is taken), so commands that report an existing
    output as one clear line report this one the same way.
    """

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        who = f"pid {holder.get('pid', '?')}"
        if holder.get("host"):
            who += f" on {holder['host']}"
        if holder.get("command"):
            who += f" ({holder['command']})"
        super().__init__(
            f"{path}: in use by {who}, started {holder.get('started', '?')}; wait for it to "
            f"finish or stop it (lock file {lock_path_for(path)})"
        )
        self.path = path
        self.holder = holder


def lock_path_for(path: str | Path) -> Path:
    """The lock file of directory ``path``: ``<parent>/.<name>.lock``."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536).decode("utf-8", "replace").strip()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {"pid": "?", "command": f"unreadable lock file: {raw[:80]!r}"}
    return data if isinstance(data, dict) else {}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DirectoryLock:
    """``with DirectoryLock(path):`` -- exclusive use of directory ``path``.

    Attributes:
        path: the locked directory (need not exist yet).
        stale: what a lock file left by a dead holder said, if one was taken over.

    Raises (on enter):
        DirectoryLockedError: another process holds the lock; names its pid.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = lock_path_for(self.path)
        self.stale: dict[str, Any] | None = None
        self._fd: int | None = None
        self._nested = False

    def acquire(self) -> DirectoryLock:
        if self._fd is not None or self._nested:
            raise RuntimeError(f"{self.path}: lock already held by this object")
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        key = (os.getpid(), self.lock_path.resolve())
        if _HELD.get(key):
            _HELD[key] += 1
            self._nested = True
            return self
        fd = self._lock_file()
        previous = _read_holder(fd)
        if previous:
            self.stale = previous
            state = "no longer running" if not _alive(previous.get("pid")) else "lock released without cleanup"
            log.warning(
                "%s: taking over a lock left by pid %s (%s; %s)", self.path, previous.get("pid"),
                previous.get("command", "?"), state,
            )  # fmt: skip
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv)[:500],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        os.fsync(fd)
        self._fd = fd
        _HELD[key] = 1
        return self

    def _lock_file(self) -> int:
        """Open and ``flock`` the lock file; retry if it was deleted or replaced meanwhile."""
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise DirectoryLockedError(self.path, holder) from None
            try:
                current = os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                return fd
            os.close(fd)  # the previous holder released (deleted) it between our open and flock

    def release(self) -> None:
        key = (os.getpid(), self.lock_path.resolve())
        if self._nested:
            self._nested = False
            _HELD[key] -= 1
            return
        if self._fd is None:
            return
        _HELD.pop(key, None)
        fd, self._fd = self._fd, None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)  # still locked: no one can take it between unlink and close
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
