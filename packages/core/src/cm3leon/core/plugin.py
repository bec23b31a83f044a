"""Built-in components of ``cm3leon-core``, registered like any third-party plugin."""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import CommandSpec


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "plugins",
            "cm3leon.core.cli:plugins_command",
            "List loaded plugins and every component they register.",
        ),
        CommandSpec(
            "config",
            "cm3leon.core.cli:config_command",
            "Validate a YAML config (with dotted overrides) against a registered schema.",
        ),
    ]
