"""How to install a plugin so that ``uv sync`` keeps it (docs/writing-plugins.md).

The page says that ``uv sync`` removes a plugin installed with ``uv pip install`` and
that ``uv sync --inexact`` (or ``uv run``) keeps it.  This checks that claim against the
installed uv, offline, on a throwaway project and a hand-built wheel of a plugin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md").read_text()
UV = shutil.which("uv")


def _wheel(directory: Path) -> Path:
    """A minimal wheel of distribution ``acme-plug`` with a cm3leon entry point."""
    wheel = directory / "acme_plug-0.1-py3-none-any.whl"
    info = "acme_plug-0.1.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("acme_plug.py", "")
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: acme-plug\nVersion: 0.1\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/entry_points.txt", "[cm3leon]\nacme = acme_plug\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_docs_give_the_command_that_keeps_a_plugin() -> None:
    assert "uv sync --inexact" in DOC and "uv add --editable ./cm3leon-colorize" in DOC


@pytest.mark.skipif(UV is None, reason="uv is not on PATH")
def test_uv_sync_removes_a_pip_installed_plugin_unless_inexact(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "ws"\nversion = "0"\nrequires-python = ">=3.10"\ndependencies = []\n'
        "[tool.uv]\npackage = false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}

    def uv(*args: str) -> str:
        run = subprocess.run([UV, *args, "--offline"], cwd=project, env=env, capture_output=True, text=True,
                             timeout=120, check=False)  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout + run.stderr

    def installed() -> bool:
        return "acme-plug" in uv("pip", "list")

    uv("venv", "--python", sys.executable)
    uv("pip", "install", str(_wheel(tmp_path)))
    assert installed()
    uv("sync", "--inexact")
    assert installed()  # the documented command keeps it
    uv("run", "python", "-c", "import acme_plug")
    assert installed()  # `uv run` syncs inexactly
    uv("sync")
    assert not installed()  # plain `uv sync` removes it: the trap the page warns about
