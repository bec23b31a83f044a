"""``cm3leon serve``: a browser playground for text-to-image, captioning, VQA and editing.

* :mod:`.playground` -- requests in, JSON results out (no web framework);
* :mod:`.jobs` -- the one-worker queue generation runs in;
* :mod:`.app` -- the FastAPI app and the static page (needs ``cm3leon-decoding[serve]``);
* :mod:`.cli` -- the command.

Importing this package does not import FastAPI.
"""

from __future__ import annotations

from cm3leon.decoding.serve.jobs import Job, JobQueue
from cm3leon.decoding.serve.playground import TASKS, Playground, PlaygroundRequest, RequestError

__all__ = ["TASKS", "Job", "JobQueue", "Playground", "PlaygroundRequest", "RequestError"]
