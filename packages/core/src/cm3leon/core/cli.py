"""The ``cm3leon`` console script.

Subcommands are not hard-wired: every package contributes its own through the
``cm3leon_register_commands`` hook, and this group only lists and dispatches
them.  A command's module is imported only when that command is invoked (or its
own ``--help`` is shown), so ``cm3leon --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import click

from cm3leon.core.plugin_manager import PluginError, get_registries, plugin_infos, plugin_warnings
from cm3leon.core.registry import DuplicateComponentError, FactoryImportError

__all__ = ["cli", "main", "plugins_command", "config_command"]


class PluginGroup(click.Group):
    """A click group whose subcommands come from the command registry.

    A lazy factory string that does not import (:class:`FactoryImportError`, raised by
    any command that loads a component) is reported as one ``Error:`` line naming the
    distribution, the string and the import error, not as a traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FactoryImportError as err:
            raise click.ClickException(str(err)) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(get_registries().commands.names()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None:
            return builtin
        commands = get_registries().commands
        if cmd_name not in commands:
            return None
        spec = commands.get(cmd_name)
        target = spec.load()
        # The factory may be the click command itself or a function returning one.
        command = target if isinstance(target, click.Command) else target()
        if not isinstance(command, click.Command):
            raise click.ClickException(
                f"command factory {spec.factory!r} returned {type(command).__name__}, "
                "expected a click.Command"
            )
        if command.name != cmd_name:
            command.name = cmd_name
        if not command.short_help and spec.description:
            command.short_help = spec.description
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Use the registered one-line descriptions so that listing does not import modules.
        rows = []
        commands = get_registries().commands
        for name in self.list_commands(ctx):
            if name in commands:
                rows.append((name, commands.get(name).description))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """cm3leon: retrieval-augmented, token-based, decoder-only text+image models.

    Every subcommand below is contributed by an installed package through the
    cm3leon_register_commands hook; `cm3leon plugins list` shows who provides what.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group("plugins")
def plugins_command() -> None:
    """Inspect loaded plugins and the components they register."""


@plugins_command.command("list")
@click.option("--kind", default=None, help="Only this registry (e.g. tasks, tokenizers).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_list(kind: str | None, as_json: bool) -> None:
    """List every registered component with the distribution that provides it."""
    registries = get_registries()
    rows: list[dict[str, Any]] = []
    for attr, registry in registries.all():
        if kind is not None and kind not in (attr, registry.kind):
            continue
        for reg in registry:
            rows.append(
                {
                    "registry": attr,
                    "name": reg.spec.name,
                    "distribution": reg.distribution,
                    "version": reg.version,
                    "description": reg.spec.description,
                }
            )
    if kind is not None and not rows and kind not in dict(registries.all()):
        known = ", ".join(name for name, _ in registries.all())
        raise click.BadParameter(f"unknown registry {kind!r}; known: {known}", param_hint="--kind")
    if as_json:
        data = {"plugins": _plugin_rows(), "components": rows, "warnings": plugin_warnings()}
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, int(os.environ.get("COLUMNS", "0") or 0)))
    table = Table(title="cm3leon plugins", show_lines=False)
    for column in ("registry", "name", "distribution", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        dist = f"{row['distribution']} {row['version']}".strip()
        table.add_row(row["registry"], row["name"], dist, row["description"])
    console.print(table)
    console.print(f"{len(rows)} components from {len(_plugin_rows())} plugins")
    for message in plugin_warnings():
        console.print(f"warning: {message}", markup=False, highlight=False)


@plugins_command.command("hooks")
def plugins_hooks() -> None:
    """Print every hook with its signature, contract and spec fields (docs/hooks.md)."""
    from cm3leon.core.hooks_doc import render_hooks_markdown

    click.echo(render_hooks_markdown(), nl=False)


def _plugin_rows() -> list[dict[str, str]]:
    return [
        {"plugin": i.name, "distribution": i.distribution, "version": i.version, "entry_point": i.entry_point}
        for i in plugin_infos().values()
    ]


@click.group("config")
def config_command() -> None:
    """Validate and print configs against their registered schemas."""


@config_command.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--schema", required=True, help="Registered config schema name (see plugins list).")
@click.option("--print", "print_it", is_flag=True, help="Print the resolved config as YAML.")
def config_validate(path: str, overrides: tuple[str, ...], schema: str, print_it: bool) -> None:
    """Load PATH with OVERRIDES (dotted key=value) and check it against SCHEMA.

    For the ``train`` schema this runs every check ``cm3leon train run`` makes before it
    builds a model (:func:`cm3leon.core.train.config.check_train_config`): values and
    choices (precision names, trackers), the device this machine has, and that the data
    directories and ``model.init_from`` exist.
    """
    from cm3leon.core.config import ConfigError, config_to_yaml, load_config, schema_for

    try:
        cfg = load_config(schema_for(schema), path, overrides)
        _schema_checks(cfg, path)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    if print_it:
        click.echo(config_to_yaml(cfg))
    else:
        click.echo(f"{path}: valid {schema} config")


def _schema_checks(cfg: Any, path: str) -> None:
    """The checks the command that consumes ``cfg`` makes before it starts (train configs)."""
    from cm3leon.core.train.config import TrainConfig, check_train_config

    if isinstance(cfg, TrainConfig):
        check_train_config(cfg, source=path)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="cm3leon", standalone_mode=True)
    except (PluginError, DuplicateComponentError) as err:
        click.echo(f"Error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover - `python -m cm3leon.core.cli`
    main()
