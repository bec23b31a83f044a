"""`cm3leon serve` end to end in headless Chromium (the system one, driven by Playwright).

The server runs as a real subprocess on a free port with a tiny random model, a BM25 bank
and a 1-layer CLIP; the test types a prompt and gets images (with the retrieved documents
and the CLIP order), uploads an image and gets a caption, sends bad inputs and sees the
errors in the page, and then generates again.  A screenshot of the final page is written
to ``$CM3LEON_SCREENSHOT`` (default: the test's tmp dir).  Chromium comes from the system
(`.ci/run` installs Debian's ``chromium`` and sets ``CM3LEON_REQUIRE_CHROMIUM=1``, which
turns a missing browser or Playwright into a failure instead of a skip).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.decoding._serve_helpers import build_assets

pytestmark = pytest.mark.integration
TIMEOUT_MS = 60_000


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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    assets = build_assets(tmp_path_factory.mktemp("serve"))
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


def _generate(page) -> None:
    page.click("#generate")
    page.wait_for_function("!document.getElementById('generate').disabled", timeout=TIMEOUT_MS)


def test_playground_in_chromium(browser, server, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server["url"])
    page.wait_for_function(
        "document.getElementById('about').textContent.includes('CLIP re-ranking on')"
    )

    # Text to image, 4 candidates, 2 retrieved documents, CLIP order.
    page.fill("#text", "a red cube")
    page.fill("#num_candidates", "4")
    _generate(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    imgs = page.locator("#candidates li img")
    assert imgs.count() == 4, page.inner_text("body")
    assert page.evaluate(
        "[...document.querySelectorAll('#candidates img')].every(i => i.naturalWidth === 32)"
    )
    assert page.locator("#retrieved li img").count() == 2
    assert "best first by CLIP score" in page.inner_text("#order")
    assert page.inner_text("#candidates li.best").startswith("rank 1")
    assert page.get_attribute("#progress", "max") == "64" and page.inner_text("#stage") == "done"

    # Captioning: upload an image, get text (k=0: a BM25 bank cannot be queried with an image alone).
    page.check("input[value=caption]")
    page.fill("#k", "0")
    assert page.is_hidden("#text-row") and page.is_visible("#image-row")
    page.set_input_files("#image", str(server["red"]))
    _generate(page)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert (
        page.locator("#candidates li .text").count() == 4
        and page.locator("#candidates li img").count() == 0
    )

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
    shot = Path(os.environ.get("CM3LEON_SCREENSHOT") or tmp_path / "playground.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
