"""`cm3leon serve` end to end in headless Chromium (the system one, driven by Playwright).

The server runs as a real subprocess on a free port with a tiny random model, a BM25 bank
and a 1-layer CLIP; the test types a prompt and gets images (with the retrieved documents
and the CLIP order), uploads an image and gets a caption, sends bad inputs and sees the
errors in the page, and then generates again.  A screenshot of the final page is written
into the directory ``$CM3LEON_SCREENSHOT`` (default: the test's tmp dir).  Chromium comes from the system
(`.ci/run` installs Debian's ``chromium`` and sets ``CM3LEON_REQUIRE_CHROMIUM=1``, which
turns a missing browser or Playwright into a failure instead of a skip).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.decoding._serve_helpers import build_assets

pytestmark = pytest.mark.integration
TIMEOUT_MS = 60_000
#: Records every text the progress line shows (``decoding · n/64 tokens`` in between when a
#: poll falls inside the decode: the tiny model takes well under a second).
STAGES_JS = """() => {
  window.stages = [];
  new MutationObserver(() => window.stages.push(document.getElementById('stage').textContent))
    .observe(document.getElementById('stage'), {childList: true, characterData: true, subtree: true});
}"""


def _require(what: str) -> None:
    if os.environ.get("CM3LEON_REQUIRE_CHROMIUM"):  # set by .ci/run, which installs it
        pytest.fail(f"CM3LEON_REQUIRE_CHROMIUM is set but {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _require("no chromium on PATH")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("the playwright package is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(False, id="no-clip"),
        # open_clip's import (~10 s on 2 busy cores) happens twice: building the encoder
        # here and loading it in the server; the default suite runs the variant without it.
        pytest.param(True, id="clip", marks=pytest.mark.slow),
    ],
)
def server(request, tmp_path_factory):
    assets = build_assets(tmp_path_factory.mktemp("serve"), clip=request.param)
    exe = Path(sys.executable).with_name("cm3leon")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cm3leon.core.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*cmd, "serve", *assets["args"], "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        url, seen = None, []
        while url is None:
            line = lines.get(timeout=120)
            seen.append(line)
            if line.startswith("cm3leon playground: "):
                url = line.split(": ", 1)[1].strip()
            assert proc.poll() is None, "".join(seen)
        yield {**assets, "url": url, "proc": proc}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _post_job(url: str, form: dict[str, str]) -> dict:
    """Submit a job as another client would (urlencoded form)."""
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(
        urllib.request.Request(url + "api/jobs", data=data), timeout=30
    ) as res:
        assert res.status == 202
        return json.loads(res.read())


def _generate(page) -> None:
    page.click("#generate")
    page.wait_for_function("!document.getElementById('generate').disabled", timeout=TIMEOUT_MS)


def test_playground_in_chromium(browser, server, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server["url"])
    page.wait_for_function("document.getElementById('about').textContent.includes('re-ranking')")

    # Text to image, 4 candidates, 2 retrieved documents, CLIP order, submitted right after
    # another client's job: the page shows its job queued or running, then done.
    page.evaluate(STAGES_JS)
    page.fill("#text", "a red cube")
    page.fill("#num_candidates", "4")
    _post_job(
        server["url"],
        {"task": "text_to_image", "text": "another client", "num_candidates": "16", "k": "2"},
    )
    _generate(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    imgs = page.locator("#candidates li img")
    assert imgs.count() == 4, page.inner_text("body")
    stages = page.evaluate("window.stages")
    # The first poll follows the submission at once, long before 64 model steps are done.
    running = [x for x in stages if re.match(r"(queued|starting|retrieving|decoding)", x)]
    assert running and "done · 64/64 tokens" in stages and stages[-1] == "done", stages
    assert page.evaluate(
        "[...document.querySelectorAll('#candidates img')].every(i => i.naturalWidth === 32)"
    )
    assert page.locator("#retrieved li img").count() == 2
    if server["clip"]:  # the CLIP order: rank, sampling number, score
        assert "best first by CLIP score" in page.inner_text("#order")
        assert page.inner_text("#candidates li.best").startswith("rank 1 · sample #")
        assert re.search(r"CLIP -?\d\.\d{3}$", page.inner_text("#candidates li.best"))
    else:
        assert "sampling order" in page.inner_text("#order")
        assert page.locator("#candidates li.best").count() == 0  # no "best" without re-ranking
        assert page.inner_text("#candidates li >> nth=0").startswith("sample #0")
    assert page.get_attribute("#progress", "max") == "64" and page.inner_text("#stage") == "done"

    # Captioning: upload an image, get text (k=0: a BM25 bank cannot be queried with an image alone).
    page.check("input[value=caption]")
    page.fill("#k", "0")
    page.fill("#num_candidates", "4")
    assert page.is_hidden("#text-row") and page.is_visible("#image-row")
    page.set_input_files("#image", str(server["red"]))
    _generate(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert (
        page.locator("#candidates li .text").count() == 4
        and page.locator("#candidates li img").count() == 0
    )

    # VQA (image + question) and editing (image + instruction).
    page.fill("#num_candidates", "1")
    page.check("input[value=vqa]")
    page.fill("#text", "what colour is it?")
    _generate(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert page.locator("#candidates li .text").count() == 1
    page.check("input[value=edit]")
    page.fill("#text", "make it blue")
    _generate(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert page.locator("#candidates li img").count() == 1 and "dual_cfg" in page.inner_text(
        "#timing"
    )
    page.check("input[value=caption]")

    # Bad inputs: a non-image upload, then an empty prompt; the errors are shown in the page.
    page.set_input_files("#image", str(server["bad"]))
    _generate(page)
    assert page.is_visible("#error") and "not an image" in page.inner_text("#error")
    page.check("input[value=text_to_image]")
    page.fill("#text", "  ")
    _generate(page)
    assert page.is_visible("#error") and "give a prompt" in page.inner_text("#error")

    # The server keeps serving: the next request succeeds and clears the error.
    page.fill("#text", "a blue ball")
    page.fill("#num_candidates", "3")
    page.fill("#k", "2")
    _generate(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert (
        page.locator("#candidates li img").count() == 3
        and page.locator("#retrieved li").count() == 2
    )
    assert server["proc"].poll() is None
    name = f"playground-{'clip' if server['clip'] else 'no-clip'}.png"
    shot = Path(os.environ.get("CM3LEON_SCREENSHOT") or tmp_path) / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
