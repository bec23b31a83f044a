"""The playground's HTTP API without a browser (FastAPI TestClient over the real app and model)."""

from __future__ import annotations

import base64
import io
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("fastapi", reason="needs cm3leon-decoding[serve]")
from fastapi.testclient import TestClient  # noqa: E402

from cm3leon.core.cli import cli  # noqa: E402
from cm3leon.decoding.serve.app import STATIC, create_app  # noqa: E402
from cm3leon.decoding.serve.cli import build_playground  # noqa: E402
from cm3leon.decoding.serve.jobs import JobQueue  # noqa: E402
from tests.decoding._serve_helpers import build_assets  # noqa: E402


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    return build_assets(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(assets):
    a = assets["args"]
    opts = dict(zip(a[::2], a[1::2], strict=True))
    playground = build_playground(opts["--model"], text_tokenizer=opts["--text-tokenizer"],
                                  image_tokenizer=opts["--image-tokenizer"], bank=opts["--bank"], clip=opts["--clip"])  # fmt: skip
    with TestClient(create_app(playground)) as c:
        yield c


def _wait(client: TestClient, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def _png(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_page_and_info(client) -> None:
    page = client.get("/")
    assert (
        page.status_code == 200
        and "cm3leon playground" in page.text
        and "/static/app.js" in page.text
    )
    assert client.get("/static/app.js").status_code == 200
    info = client.get("/api/info").json()
    assert set(info["tasks"]) == {"text_to_image", "caption", "vqa", "edit"}
    assert info["retrieval"] and info["rerank"] and info["tokens_per_image"] == 64
    assert {"top_p", "cd_k", "cd_k_top_p", "dual_cfg"} <= set(info["strategies"])
    assert info["tasks"]["vqa"]["layout"] == "SFT task 'vqa2'"  # cm3leon-tasks is installed here


def test_text_to_image_with_retrieval_and_clip_ranking(client) -> None:
    form = {"task": "text_to_image", "text": "a red cube", "strategy": "cd_k_top_p", "num_candidates": "4",
            "k": "2", "cfg_scale": "2.5", "seed": "3"}  # fmt: skip
    submitted = client.post("/api/jobs", data=form)
    assert submitted.status_code == 202, submitted.text
    job = _wait(client, submitted.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["progress"]["done"] == job["progress"]["total"] == 64
    result = job["result"]
    assert result["reranked"] and len(result["candidates"]) == 4
    scores = [c["score"] for c in result["candidates"]]
    assert scores == sorted(scores, reverse=True)  # best first by CLIP score
    assert sorted(c["index"] for c in result["candidates"]) == [0, 1, 2, 3]
    assert len({c["pipeline"] for c in result["candidates"]}) == 2  # half top-p, half CD-K
    assert all(_png(c["image"]).size == (32, 32) for c in result["candidates"])
    ids = [d["id"] for d in result["retrieved"]]
    assert len(set(ids)) == 2 and set(ids) <= {"doc-red", "doc-green", "doc-blue", "doc-yellow"}
    for doc in result["retrieved"]:  # shown with their caption and their image
        assert doc["text"] == f"a {doc['id'][4:]} square" and _png(doc["image"]).size == (32, 32)


@pytest.mark.parametrize("task", ["caption", "vqa"])
def test_captioning_and_vqa_give_text(client, assets, task: str) -> None:
    form = {
        "task": task,
        "text": "what colour is it?",
        "num_candidates": "2",
        "max_new_tokens": "6",
    }
    files = {"image": ("red.png", assets["red"].read_bytes(), "image/png")}
    job = _wait(client, client.post("/api/jobs", data=form, files=files).json()["id"])
    assert job["status"] == "done", job["error"]
    cands = job["result"]["candidates"]
    assert len(cands) == 2 and all(isinstance(c["text"], str) and c["image"] is None for c in cands)
    assert all(c["score"] is not None for c in cands)  # texts ranked against the uploaded image


def test_editing_gives_an_image(client, assets) -> None:
    form = {"task": "edit", "text": "make it blue", "num_candidates": "1"}
    files = {"image": ("red.png", assets["red"].read_bytes(), "image/png")}
    job = _wait(client, client.post("/api/jobs", data=form, files=files).json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["result"]["strategy"] == "dual_cfg" and _png(
        job["result"]["candidates"][0]["image"]
    ).size == (32, 32)


@pytest.mark.parametrize(
    ("form", "upload", "message"),
    [
        ({"task": "text_to_image", "text": "   "}, None, "give a prompt"),
        ({"task": "caption"}, "bad", "not an image PIL can read"),
        ({"task": "vqa", "text": "q?"}, None, "upload an image"),
        ({"task": "paint", "text": "x"}, None, "unknown task 'paint'"),
        (
            {"task": "text_to_image", "text": "x", "cfg_scale": "high"},
            None,
            "cfg_scale must be a number",
        ),
        (
            {"task": "text_to_image", "text": "x", "num_candidates": "99"},
            None,
            "num_candidates must be between 1 and 16",
        ),
        (
            {"task": "text_to_image", "text": "x", "strategy": "beam"},
            None,
            "unknown strategy 'beam'",
        ),
    ],
)
def test_bad_forms_are_400_with_a_message(client, assets, form, upload, message) -> None:
    files = {"image": ("x.png", assets["bad"].read_bytes(), "image/png")} if upload else None
    res = client.post("/api/jobs", data=form, files=files)
    assert res.status_code == 400 and message in res.json()["error"], res.text


def test_a_failing_job_reports_its_error_and_the_next_succeeds(client) -> None:
    # The bank holds 4 documents: k=8 passes the form check but the retriever cannot supply it.
    failed = _wait(
        client,
        client.post("/api/jobs", data={"task": "text_to_image", "text": "x", "k": "8"}).json()[
            "id"
        ],
    )
    assert failed["status"] == "error" and "k=8" in failed["error"], failed
    ok = _wait(
        client,
        client.post(
            "/api/jobs", data={"task": "text_to_image", "text": "x", "num_candidates": "1"}
        ).json()["id"],
    )
    assert ok["status"] == "done"
    assert client.get("/api/jobs/job-999999").status_code == 404


class _Recorder:
    """Stands in for a Job: records every progress update the worker makes."""

    def __init__(self) -> None:
        self.updates: list[dict] = []

    def update(self, **values) -> None:
        self.updates.append(values)


def test_progress_counts_decoded_tokens(client) -> None:
    playground = client.app.state.playground
    job = _Recorder()
    req = playground.parse({"task": "text_to_image", "text": "a red cube", "num_candidates": "2"})
    playground.run(req, job)
    done = [u["done"] for u in job.updates if "done" in u]
    assert done == sorted(done) and done[-1] == 64 and len(set(done)) > 32  # token by token
    assert any(u.get("stage") == "decoding" for u in job.updates)
    assert job.updates[0]["total"] == 64


def test_server_answers_while_a_job_runs(client) -> None:
    queue, gate = client.app.state.queue, threading.Event()
    blocker = queue.submit(lambda job: (gate.wait(30), {})[1])  # occupies the worker
    try:
        queued = client.post(
            "/api/jobs", data={"task": "text_to_image", "text": "x", "num_candidates": "1"}
        )
        assert queued.status_code == 202
        assert client.get("/api/info").json()["pending"] == 2  # the server answers meanwhile
        assert client.get(f"/api/jobs/{queued.json()['id']}").json()["status"] == "queued"
        assert client.get("/").status_code == 200
    finally:
        gate.set()
    assert _wait(client, queued.json()["id"])["status"] == "done" and blocker.status == "done"


def test_queue_serves_while_a_job_runs() -> None:
    queue, gate = JobQueue(), threading.Event()
    slow = queue.submit(lambda job: (gate.wait(10), {"n": 1})[1])
    queued = queue.submit(lambda job: {"n": 2})
    time.sleep(0.05)
    assert slow.snapshot()["status"] == "running" and queued.snapshot()["status"] == "queued"
    assert queue.pending() == 2
    gate.set()
    deadline = time.monotonic() + 10
    while queue.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.result == {"n": 1} and queued.result == {"n": 2}
    queue.shutdown()


def test_serve_command_is_registered_and_checks_its_inputs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--bank" in result.output and "--port" in result.output
    result = CliRunner().invoke(
        cli, ["serve", "--model", str(tmp_path / "missing"), "--text-tokenizer", "bytes"]
    )
    assert result.exit_code != 0 and "serve:" in result.output


def test_static_files_exist() -> None:
    assert {p.name for p in STATIC.iterdir()} >= {"index.html", "app.js", "style.css"}


def test_serve_without_the_extra_names_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` raises ImportError
    result = CliRunner().invoke(cli, ["serve", "--model", "x", "--text-tokenizer", "bytes"])
    assert result.exit_code != 0 and "cm3leon-decoding[serve]" in result.output, result.output
