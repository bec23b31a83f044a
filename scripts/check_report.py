"""Check that a `cm3leon demo` report renders in a real browser, and screenshot it.

    uv run python scripts/check_report.py runs/demo/report.html --out runs/demo/report.png

Checks, then prints a JSON summary (exit status 1 if any check fails):

1. every relative ``href``/``src`` of the report points at an existing file under the run
   directory, and every embedded ``data:image/png`` decodes as a PNG;
2. headless Chromium loads the page (``--dump-dom``): the DOM it serialises holds the
   report's title, its tables and its figures;
3. headless Chromium writes a screenshot (``--screenshot``) -- look at it.

Chromium is not a Python dependency: install it with the system package manager
(Debian: ``apt-get install -y chromium``) or pass ``--chromium PATH``.  It runs with a new
empty profile and no network services: ``--headless --no-sandbox --disable-gpu
--disable-quic --no-first-run --disable-background-networking --disable-component-update
--disable-sync``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class _Refs(HTMLParser):
    """Collects hrefs, image sources, table and figure counts, and the title."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tables = 0
        self.figures = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        elif tag == "img" and a.get("src"):
            self.srcs.append(a["src"] or "")
        self.tables += tag == "table"
        self.figures += tag == "figure"
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False if tag == "title" else self._in_title

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def find_chromium(explicit: str | None = None) -> str:
    """Path of a Chromium/Chrome binary (``explicit`` first).

    Raises:
        FileNotFoundError: none found (the message says how to install one).
    """
    for name in ([explicit] if explicit else []) + list(CANDIDATES):
        path = shutil.which(name) if name else None
        if path:
            return path
    tried = ", ".join(CANDIDATES)
    raise FileNotFoundError(
        f"no Chromium found (tried {tried}); install it, e.g. `apt-get install -y chromium`, or pass --chromium"
    )


def static_checks(report: Path) -> tuple[_Refs, list[str]]:
    """Links resolve under the run directory and embedded PNGs decode."""
    from PIL import Image

    refs = _Refs()
    refs.feed(report.read_text(encoding="utf-8"))
    problems = []
    for href in refs.hrefs + [s for s in refs.srcs if not s.startswith("data:")]:
        if re.match(r"^[a-z]+:", href) or href.startswith("#"):
            problems.append(f"non-relative link {href!r}") if href.startswith(("http", "file")) else None
            continue
        target = (report.parent / href).resolve()
        if not target.exists():
            problems.append(f"broken link {href!r}")
        elif report.parent.resolve() not in target.parents and target != report.parent.resolve():
            problems.append(f"link outside the run directory {href!r}")
    for i, src in enumerate(s for s in refs.srcs if s.startswith("data:")):
        if not src.startswith("data:image/png;base64,"):
            problems.append(f"embedded image {i}: not a PNG data URI")
            continue
        try:
            Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
        except Exception as err:  # PIL raises several error types for bad data
            problems.append(f"embedded image {i}: {err}")
    return refs, problems


def chromium(binary: str, url: str, extra: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a fresh profile directory."""
    with tempfile.TemporaryDirectory(prefix="cm3leon-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def check_report(report: Path, screenshot: Path, *, binary: str | None = None,
                 window: str = "1280,6000", timeout: float = 120.0) -> dict[str, Any]:  # fmt: skip
    """Run every check; return the summary (``ok`` is false if anything failed)."""
    report = report.resolve()
    refs, problems = static_checks(report)
    exe = find_chromium(binary)
    url = report.as_uri()
    dom = chromium(exe, url, ["--dump-dom", "--virtual-time-budget=5000"], timeout)
    rendered = _Refs()
    rendered.feed(dom.stdout)
    if dom.returncode != 0 or "<body" not in dom.stdout:
        problems.append(f"chromium --dump-dom failed (status {dom.returncode}): {dom.stderr[-500:]}")
    if rendered.title.strip() != refs.title.strip():
        problems.append(f"rendered title {rendered.title!r} != {refs.title!r}")
    if rendered.tables != refs.tables or len(rendered.srcs) != len(refs.srcs):
        problems.append(f"rendered DOM has {rendered.tables} tables / {len(rendered.srcs)} images, "
                        f"the file {refs.tables} / {len(refs.srcs)}")  # fmt: skip
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    shot = chromium(exe, url, [f"--screenshot={screenshot.resolve()}", f"--window-size={window}"], timeout)
    if shot.returncode != 0 or not screenshot.is_file() or screenshot.stat().st_size == 0:
        problems.append(f"chromium --screenshot failed (status {shot.returncode}): {shot.stderr[-500:]}")
    return {
        "report": str(report), "screenshot": str(screenshot), "chromium": exe, "title": refs.title,
        "links": len(refs.hrefs), "images": len(refs.srcs), "tables": refs.tables, "figures": refs.figures,
        "problems": problems, "ok": not problems,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", nargs="?", default="runs/demo/report.html", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="Screenshot PNG (default: next to the report).")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: found on PATH).")
    parser.add_argument("--window-size", default="1280,6000", help="WIDTH,HEIGHT of the screenshot.")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"{args.report}: no such report (run `cm3leon demo` first)", file=sys.stderr)
        return 2
    try:
        result = check_report(args.report, args.out or args.report.with_name("report.png"),
                              binary=args.chromium, window=args.window_size)  # fmt: skip
    except FileNotFoundError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
