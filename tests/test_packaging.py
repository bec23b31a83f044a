"""Each member builds as a wheel and installs alone (plus the members it declares) into a fresh virtualenv.

These tests build real wheels with ``uv build`` and create real virtualenvs with
``uv venv``; third-party wheels come from uv's cache (or PyPI), pinned to the torch
the workspace uses so nothing large is downloaded twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = ["core", "world", "tokenizers", "retrieval", "decoding", "tasks", "eval"]
pytestmark = [pytest.mark.integration]


def _member_deps(member: str) -> set[str]:
    """The cm3leon members ``member`` declares as runtime dependencies (not extras)."""
    project = tomllib.loads((ROOT / "packages" / member / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0] for dep in project.get("dependencies", [])}
    return {name.removeprefix("cm3leon-") for name in names if name.startswith("cm3leon-")}


def _closure(member: str) -> set[str]:
    """``member`` and everything it installs of the workspace, following declared dependencies."""
    seen, todo = set(), [member]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_member_deps(m))
    return seen


def _uv() -> str:
    uv = shutil.which("uv")
    assert uv, "uv must be on PATH (the CI installs it)"
    return uv


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for member in MEMBERS:
        _run(_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT / "packages" / member))
    return out


@pytest.mark.parametrize("member", MEMBERS)
def test_member_installs_alone(member: str, wheelhouse: Path, tmp_path: Path) -> None:
    uv = _uv()
    venv = tmp_path / "venv"
    _run(uv, "venv", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch==2.14.1\ntorchvision==0.29.1\n")
    _run(
        uv, "pip", "install", "--python", str(python), "--find-links", str(wheelhouse),
        "--constraint", str(constraints), f"cm3leon-{member}",
    )
    probe = (
        "import importlib, importlib.metadata as md, json;"
        f"importlib.import_module('cm3leon.{member}');"
        f"importlib.import_module('cm3leon.{member}.plugin');"
        "print(json.dumps(sorted(d.metadata['Name'] for d in md.distributions()"
        " if d.metadata['Name'].startswith('cm3leon'))))"
    )
    installed = json.loads(_run(str(python), "-c", probe).stdout)
    expected = sorted({f"cm3leon-{m}" for m in _closure(member)})
    assert installed == expected
    listed = json.loads(_run(str(venv / "bin" / "cm3leon"), "plugins", "list", "--json").stdout)
    assert {p["distribution"] for p in listed["plugins"]} == set(expected)


@pytest.mark.parametrize("member", MEMBERS)
def test_declared_ranges_resolve_without_workspace_overrides(member: str, wheelhouse: Path, tmp_path: Path) -> None:
    """Plain resolution (no overrides) of the member with all its extras must succeed."""
    extras = {
        "core": "[train,corpora]",
        "tokenizers": "[train]",
        "retrieval": "[train]",
        "eval": "[all]",
    }.get(member, "")
    req = tmp_path / "requirements.in"
    req.write_text(f"cm3leon-{member}{extras}\n")
    result = _run(
        _uv(), "pip", "compile", "--no-config", "--python-version", "3.11",
        "--find-links", str(wheelhouse), str(req), cwd=tmp_path,
    )
    assert f"cm3leon-{member}==" in result.stdout
    if extras:
        assert "mosaicml==" in result.stdout  # Composer's own pins honoured, not overridden
