"""The playground's web server: a FastAPI app over a :class:`~.playground.Playground`.

Endpoints::

    GET  /                  the page (static/index.html, app.js, style.css)
    GET  /api/info          tasks, strategies, defaults, limits, retrieval / re-ranking available
    POST /api/jobs          multipart form (task, text, image file, knobs) -> 202 {"id", "status"}
                            a bad form -> 400 {"error": "..."} (nothing is queued)
    GET  /api/jobs/{id}     {"status": queued|running|done|error, "stage", "progress":
                            {"done", "total"}, "result", "error"}; unknown id -> 404

Generation runs in the :class:`~.jobs.JobQueue`'s worker thread, so the server answers
other requests (the page's polling, a second submission that queues) while a job runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from cm3leon.decoding.serve.jobs import JobQueue
from cm3leon.decoding.serve.playground import Playground, RequestError

__all__ = ["STATIC", "create_app"]

#: The page's files (shipped in the wheel as package data).
STATIC = Path(__file__).with_name("static")
#: Largest accepted upload.
MAX_UPLOAD = 16 * 2**20


def create_app(playground: Playground, *, queue: JobQueue | None = None) -> FastAPI:
    """The app serving ``playground`` (one worker thread; see the module docstring)."""
    queue = queue or JobQueue()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        queue.shutdown()

    app = FastAPI(title="cm3leon playground", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.playground, app.state.queue = playground, queue
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {**playground.info(), "pending": queue.pending()}

    @app.post("/api/jobs")
    async def submit(request: Request) -> JSONResponse:
        try:
            form = await request.form()
        except Exception as err:  # a malformed multipart body
            return _error(f"could not read the form: {err}")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        upload = form.get("image")
        data = None
        if upload is not None and not isinstance(upload, str):
            data = await upload.read(MAX_UPLOAD + 1)
            if len(data) > MAX_UPLOAD:
                return _error(f"the uploaded image is larger than {MAX_UPLOAD // 2**20} MiB")
        try:
            req = playground.parse(fields, data)
        except RequestError as err:
            return _error(str(err))
        job = queue.submit(lambda j: playground.run(req, j))
        return JSONResponse(job.snapshot(), status_code=202)

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> JSONResponse:
        found = queue.get(job_id)
        if found is None:
            return _error(
                f"no job {job_id!r} (finished jobs are forgotten after {queue.keep} more)", 404
            )
        return JSONResponse(found.snapshot())

    return app


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
