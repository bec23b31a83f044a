"""Every YAML shipped under configs/ validates against the schema registered for its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.config import load_config
from cm3leon.core.plugin_manager import get_registries

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def _schema_for(path: Path):
    folder = path.relative_to(ROOT / "configs").parts[0]
    matches = [reg.spec for reg in get_registries().config_schemas if folder in reg.spec.directories]
    assert len(matches) == 1, f"{path}: folder {folder!r} is claimed by {len(matches)} config schemas"
    return matches[0]


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_shipped_config_validates(path: Path) -> None:
    spec = _schema_for(path)
    cfg = load_config(spec.load(), path)
    assert cfg is not None


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_shipped_config_states_its_launch_command(path: Path) -> None:
    first = path.read_text().lstrip().splitlines()[0]
    assert first.startswith("#") and "cm3leon" in path.read_text().split("\n\n")[0], (
        f"{path}: must start with a comment giving the command that launches it"
    )


def test_there_are_configs() -> None:
    assert CONFIGS, "configs/ holds no YAML"
