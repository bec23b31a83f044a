"""Built-in components of ``cm3leon-core``, registered like any third-party plugin.

One hookimpl per hook (pluggy allows one per plugin); each returns the specs of
every core area.  Factories are lazy ``"module:attr"`` strings so that listing
plugins does not import torch.
"""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import CommandSpec, SourceSpec


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


@hookimpl
def cm3leon_register_sources() -> list[SourceSpec]:
    return []
