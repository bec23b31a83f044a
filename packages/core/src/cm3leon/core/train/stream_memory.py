"""Shared memory that ``StreamingDataset`` leaves behind when its process is killed.

A ``StreamingDataset`` registers its local cache directories in POSIX shared memory
(``/dev/shm/{prefix:06}_locals``, with ``_barrier``, ``_next_epoch``, ... beside it) and
file locks in ``$TMPDIR``.  A normal exit, or Python's resource tracker after a plain
kill, removes the segments; a SIGKILL of the whole process group (an OOM kill of the job,
a launcher killing its ranks) leaves them.  A restart with the same file locks skips the
stale prefix, but one with another ``$TMPDIR`` (job schedulers give each job its own)
walks into it and fails with streaming's ``ValueError: Reused local directory ...
call streaming.base.util.clean_stale_shared_memory()`` -- advice for a script author, and
that function removes *every* streaming segment on the host, live jobs' included.

Here, for streams with a ``remote`` (the only ones streaming checks), the local leader
records ``{pid, host, prefix}`` in ``<local>/.cm3leon-streaming-owner.json`` once its
dataset exists.  At the next start, segments of that prefix naming the same directory
whose recorded owner is dead are removed (:func:`release_stale_shared_memory`); anything
else that still conflicts is reported by :func:`explain_conflict` with the segments and
what to do.  Linux only (``/dev/shm``); elsewhere nothing is found and nothing removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["OWNER_FILE", "explain_conflict", "record_owner", "release_stale_shared_memory", "segments_naming"]

log = logging.getLogger(__name__)

SHM = Path("/dev/shm")
OWNER_FILE = ".cm3leon-streaming-owner.json"
_LOCALS = re.compile(r"^(\d{6})_locals$")


def _registered_locals(path: Path) -> list[str]:
    """The directories a ``{prefix}_locals`` segment lists (streaming's ``_pack_locals`` layout)."""
    try:
        data = path.read_bytes()
        size = int.from_bytes(data[:4], "little", signed=True)
        return data[4:size].decode("utf-8").split("\0")[:-1]
    except (OSError, UnicodeDecodeError, ValueError):
        return []


def segments_naming(local_dirs: Sequence[str | Path]) -> dict[int, list[Path]]:
    """``{prefix: [/dev/shm segments of that prefix]}`` for registrations naming ``local_dirs``."""
    ours = {os.path.abspath(d) for d in local_dirs}
    found: dict[int, list[Path]] = {}
    for entry in sorted(SHM.iterdir()) if SHM.is_dir() else ():
        match = _LOCALS.match(entry.name)
        if match and ours & {os.path.abspath(d) for d in _registered_locals(entry)}:
            found[int(match[1])] = sorted(SHM.glob(f"{match[1]}_*"))
    return found


def _owner(local: str | Path) -> dict[str, Any]:
    try:
        owner = json.loads((Path(local) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _dead_owner(local: str | Path, prefix: int) -> dict[str, Any] | None:
    """The recorded owner of ``prefix`` on this host if that process is gone, else ``None``."""
    owner = _owner(local)
    if owner.get("prefix") == prefix and owner.get("host") == socket.gethostname() and not _alive(owner.get("pid")):
        return owner
    return None


def release_stale_shared_memory(local_dirs: Sequence[str | Path]) -> list[Path]:
    """Remove the segments of killed owners that register ``local_dirs``; returns what went.

    Only the local leader (``LOCAL_RANK`` 0) removes anything, and only segments whose
    recorded owner (:func:`record_owner`) is a dead process on this host.
    """
    if int(os.environ.get("LOCAL_RANK", "0") or 0) != 0:
        return []
    removed: list[Path] = []
    for prefix, paths in segments_naming(local_dirs).items():
        owner = next((o for d in local_dirs if (o := _dead_owner(d, prefix))), None)
        if owner is None:
            continue
        log.warning("removing shared memory prefix %06d left by killed pid %s: %s", prefix, owner.get("pid"),
                    ", ".join(p.name for p in paths))
        for path in paths:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def record_owner(prefix: int, local_dirs: Sequence[str | Path]) -> None:
    """Local leader: note that this process owns ``prefix`` for ``local_dirs``."""
    if int(os.environ.get("LOCAL_RANK", "0") or 0) != 0:
        return
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "prefix": int(prefix)})
    for local in local_dirs:
        tmp = Path(local) / f"{OWNER_FILE}.{os.getpid()}.tmp"
        try:
            tmp.write_text(record)
            os.replace(tmp, Path(local) / OWNER_FILE)
        except OSError as err:
            log.warning("could not record the shared-memory owner in %s: %s", local, err)


def explain_conflict(local_dirs: Sequence[str | Path], where: str) -> str:
    """An actionable message for streaming's ``Reused local directory`` error."""
    lines = []
    for prefix, paths in segments_naming(local_dirs).items():
        owners = [o for d in local_dirs if (o := _owner(d)).get("prefix") == prefix]
        holder = f"pid {owners[0].get('pid')} on {owners[0].get('host')}" if owners else "an unrecorded process"
        state = "alive" if owners and _alive(owners[0].get("pid")) else "not running here"
        lines.append(f"  prefix {prefix:06d} ({holder}, {state}): {' '.join(str(p) for p in paths)}")
    return (
        f"{where}.streams: a local cache directory ({', '.join(map(str, local_dirs))}) is registered in "
        "shared memory by another StreamingDataset:\n" + "\n".join(lines or ["  (segments not found under /dev/shm)"])
        + "\nIf another run is using it, wait for it or give this run a different `local` directory; if "
        "that run was killed, remove the listed segments (`rm` them) and start again."
    )
