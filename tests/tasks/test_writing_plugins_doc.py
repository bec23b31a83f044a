"""docs/writing-plugins.md stays true: its example package is extracted, loaded and tested.

The default test exposes the extracted package to ``importlib.metadata`` with a
dist-info directory built from the page's own ``pyproject.toml`` (how an installed
wheel is discovered) and runs the page's conformance test in a subprocess; the slow
test pip-installs the package for real.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "writing-plugins.md").read_text()
PACKAGE = "cm3leon-colorize"


def example_files() -> dict[str, str]:
    """``relative path -> content`` of every fenced block whose first line names a package file."""
    blocks = re.findall(r"```(?:python|toml)\n# (cm3leon-colorize/\S+)\n(.*?)```", DOC, flags=re.S)
    return {path: body for path, body in blocks}


def write_package(root: Path) -> Path:
    for rel, body in example_files().items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"# {rel}\n{body}")
    return root / PACKAGE


def dist_info(pkg: Path, site: Path) -> None:
    """What installing the wheel would put on sys.path: the metadata and the entry points."""
    text = (pkg / "pyproject.toml").read_text()
    name = re.search(r'^name = "(.+)"$', text, flags=re.M).group(1)
    version = re.search(r'^version = "(.+)"$', text, flags=re.M).group(1)
    section = text.split("[project.entry-points.cm3leon]\n", 1)[1].split("\n\n", 1)[0]
    points = dict(re.findall(r'^(\w+) = "(.+)"$', section, flags=re.M))
    assert points, "the example pyproject.toml declares no cm3leon entry point"
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[cm3leon]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))


def test_page_holds_the_whole_package() -> None:
    assert set(example_files()) == {
        f"{PACKAGE}/pyproject.toml", f"{PACKAGE}/src/cm3leon_colorize/__init__.py",
        f"{PACKAGE}/src/cm3leon_colorize/task.py", f"{PACKAGE}/src/cm3leon_colorize/plugin.py",
        f"{PACKAGE}/tests/test_colorize.py",
    }  # fmt: skip


@pytest.mark.integration
def test_example_package_is_discovered_listed_and_conforms(tmp_path: Path, monkeypatch, fresh_plugins) -> None:
    pkg = write_package(tmp_path / "work")
    dist_info(pkg, tmp_path / "site")
    monkeypatch.syspath_prepend(str(pkg / "src"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fresh_plugins()
    from cm3leon.core.cli import cli
    from cm3leon.core.plugin_manager import get_registries

    assert get_registries().tasks.registration("colorize").distribution == PACKAGE
    listed = CliRunner().invoke(cli, ["plugins", "list", "--kind", "tasks"])
    assert "colorize" in listed.output and PACKAGE in listed.output
    shown = CliRunner().invoke(cli, ["tasks", "show", "colorize"])
    assert shown.exit_code == 0 and shown.output.strip() in DOC
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM3LEON_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(pkg / "src"), str(ROOT)])
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(pkg),
                          str(pkg / "tests")], capture_output=True, text=True, env=env, cwd=pkg, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"\b1[0-9] passed\b", run.stdout), run.stdout  # the inherited checks ran


@pytest.mark.slow
@pytest.mark.integration
def test_example_package_pip_installs(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv must be on PATH"
    pkg = write_package(tmp_path)
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    install = subprocess.run([uv, "pip", "install", "--python", sys.executable, "--no-deps", str(pkg)],
                             capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert install.returncode == 0, install.stderr
    try:
        cm3leon = [sys.executable, "-m", "cm3leon.core.cli"]
        listed = subprocess.run([*cm3leon, "plugins", "list", "--kind", "tasks"], capture_output=True, text=True)
        assert "colorize" in listed.stdout and PACKAGE in listed.stdout, listed.stderr
        shown = subprocess.run([*cm3leon, "tasks", "show", "colorize"], capture_output=True, text=True)
        assert shown.stdout.strip() in DOC, shown.stdout + shown.stderr
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                                str(pkg), str(pkg / "tests")], capture_output=True, text=True, cwd=pkg)  # fmt: skip
        assert tests.returncode == 0, tests.stdout + tests.stderr
    finally:
        subprocess.run([uv, "pip", "uninstall", "--python", sys.executable, PACKAGE],
                       capture_output=True, text=True, env=env, check=False)  # fmt: skip
