"""``cm3leon eval text-to-image|captioning|vqa|editing [CONFIG] [key=value ...]``.

One command per protocol (:data:`cm3leon.eval.protocols.PROTOCOLS`): it generates from
the checkpoint the config names and scores, or with ``--predictions PATH`` scores existing
predictions; either way ``results.json`` is written into ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["add_protocol_commands"]

#: Command -> the arguments of scoring existing predictions (the help's example).
_SCORING = {
    "text-to-image": "--predictions generation/samples/manifest.json data.reference=REF",
    "captioning": "--predictions captions.json data.annotations=captions_val2017.json",
    "vqa": "--predictions answers.json data.annotations=v2_mscoco_val2014_annotations.json",
    "editing": "--predictions EDITED_DIR data.root=instruct_pix2pix",
}


def _split(args: tuple[str, ...]) -> tuple[str | None, list[str]]:
    if args and Path(args[0]).suffix in (".yaml", ".yml") and "=" not in args[0]:
        return args[0], list(args[1:])
    return None, list(args)


def _echo(result: dict[str, Any]) -> None:
    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    flat = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
    click.echo("  ".join(f"{k} = {fmt(v)}" for k, v in flat.items()))
    if result.get("baselines"):
        click.echo("baselines: " + json.dumps(result["baselines"], default=str))


def _make_command(name: str, runner: str, schema: type, run: Any, text: str) -> click.Command:
    @click.command(
        name,
        help=f"{text}\n\nARGS: an optional YAML config, then dotted key=value overrides of "
        f"{schema.__module__}.{schema.__name__} (the {runner!r} runner's schema).",
        short_help=text.split(":")[0],
        epilog=f"Score existing predictions (no model): cm3leon eval {name} {_SCORING[name]}",
    )
    @click.argument("args", nargs=-1)
    @click.option("--predictions", default=None, metavar="PATH",
                  help="Score these predictions instead of generating (sets 'predictions').")  # fmt: skip
    @click.option("--out", default=None, help=f"Run directory (default runs/eval/{name}).")
    @click.option(
        "--force", is_flag=True, help="Generate again even if a finished generation matches."
    )
    def command(args: tuple[str, ...], predictions: str | None, out: str | None, force: bool) -> None:
        from cm3leon.core.config import ConfigError, load_config
        from cm3leon.eval.cli import _user_errors

        path, overrides = _split(args)
        if predictions is not None:
            overrides.append(f"predictions={predictions}")
        run_dir = Path(out or Path("runs") / "eval" / name)
        with _user_errors():
            try:
                cfg = load_config(schema, path, overrides)
            except ConfigError as err:
                raise ConfigError(str(err).replace("<config>", f"eval {name}", 1)) from None
            try:
                result = run(cfg, run_dir, force=force)
            except ValueError as err:  # bad prompts/options/tokenizers reported by the generator
                raise click.ClickException(f"{type(err).__name__}: {err}") from None
        _echo(result)
        click.echo(f"wrote {run_dir / 'results.json'}")

    return command


def add_protocol_commands(group: click.Group) -> None:
    """Add one command per protocol to ``group`` (``cm3leon eval``)."""
    from cm3leon.eval.protocols import PROTOCOLS

    for name, (runner, schema, run, text) in PROTOCOLS.items():
        group.add_command(_make_command(name, runner, schema, run, text))
