"""A one-worker job queue: generation runs in a background thread, the server keeps serving.

Generation on CPU takes seconds to minutes, so a request only *submits* a job and the
page polls it (``GET /api/jobs/{id}``).  One worker thread runs the jobs in order (the
model is not shared between concurrent decodes); the event loop never blocks on it.
A job's ``progress`` is updated from the worker (``stage``, ``done`` / ``total`` tokens)
and read by the server thread: plain attribute writes of immutable values, so a reader
sees a consistent snapshot through :meth:`Job.snapshot` (taken under the job's lock).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "JobQueue"]

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One submitted generation.

    Attributes:
        id: opaque id (``job-<n>``).
        status: ``queued`` -> ``running`` -> ``done`` | ``error``.
        stage: what the worker is doing (``"decoding"``, ``"re-ranking"``, ...).
        done, total: tokens decoded so far and expected (``total`` 0 = unknown).
        result: the JSON result of a finished job.
        error: the message of a failed job (shown in the page).
    """

    id: str
    status: str = "queued"
    stage: str = "queued"
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self, key, value)

    def snapshot(self) -> dict[str, Any]:
        """The job as JSON (what ``GET /api/jobs/{id}`` returns)."""
        with self._lock:
            return {"id": self.id, "status": self.status, "stage": self.stage,
                    "progress": {"done": self.done, "total": self.total},
                    "result": self.result, "error": self.error}  # fmt: skip


class JobQueue:
    """Run ``fn(job)`` callables one at a time in a worker thread.

    Args:
        keep: finished jobs remembered (oldest forgotten first).
    """

    def __init__(self, keep: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cm3leon-serve")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.keep = keep

    def submit(self, fn: Callable[[Job], dict[str, Any]]) -> Job:
        """Queue ``fn``; its return value becomes ``job.result``, an exception ``job.error``."""
        job = Job(f"job-{next(self._ids)}")
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, fn, job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return sum(j.status in ("queued", "running") for j in self._jobs.values())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _run(fn: Callable[[Job], dict[str, Any]], job: Job) -> None:
        job.update(status="running", stage="starting")
        try:
            result = fn(job)
        except Exception as err:  # every failure is shown in the page; the worker lives on
            message = str(err) or type(err).__name__
            if not isinstance(err, ValueError):
                message = f"{type(err).__name__}: {message}"
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            job.update(status="error", stage="failed", error=message)
            return
        job.update(status="done", stage="done", result=result)
