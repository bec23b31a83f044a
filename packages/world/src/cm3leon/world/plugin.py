"""Built-in components of ``cm3leon-world``: the ``cm3leon world`` command and the ``world`` source."""

from __future__ import annotations

from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import CommandSpec, SourceSpec


@hookimpl
def cm3leon_register_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "world",
            "cm3leon.world.cli:world_command",
            "Procedural world: export every Table 5 task in public formats, show scenes, score images.",
        ),
    ]


@hookimpl
def cm3leon_register_sources() -> list[SourceSpec]:
    return [
        SourceSpec(
            "world",
            "cm3leon.world.records:world_source",
            "Procedural world caption-image pairs (options: n, seed, image_size, split, caption; entity_docs, entities, entity_zipf for long-tail entities).",
        ),
    ]
