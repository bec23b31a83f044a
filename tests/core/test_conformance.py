"""The generic conformance suite, run over every registered component of every package."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cm3leon.core.cli import cli
from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.testing import check_component

COMPONENTS = [(attr, reg.spec.name) for attr, registry in get_registries().all() for reg in registry]


@pytest.mark.parametrize(("registry", "name"), COMPONENTS, ids=[f"{a}:{n}" for a, n in COMPONENTS])
def test_registered_component_conforms(registry: str, name: str) -> None:
    check_component(registry, name)


COMMANDS = get_registries().commands.names()


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_root_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
