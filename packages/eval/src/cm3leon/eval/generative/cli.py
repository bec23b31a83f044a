"""``cm3leon eval protocol text-to-image|captioning|vqa|editing [CONFIG] [key=value ...]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["protocol_group"]


@click.group("protocol")
def protocol_group() -> None:
    """Evaluate a checkpoint end to end: generate, score, write results.json and grids.

    \b
    Every command takes an optional YAML config and dotted overrides of the protocol's
    schema (cm3leon.eval.generative), e.g.
      cm3leon eval protocol vqa model.export=runs/demo/export/sft \\
          model.text_tokenizer=bpe:runs/demo/tokenizers/text \\
          model.image_tokenizer=vqgan:runs/demo/tokenizers/image \\
          data.questions=runs/demo/world/vqa2/v2_OpenEnded_mscoco_val2014_questions.json \\
          data.annotations=runs/demo/world/vqa2/v2_mscoco_val2014_annotations.json --out runs/eval/vqa
    """


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
    )
    @click.argument("args", nargs=-1)
    @click.option("--out", default=None, help=f"Run directory (default runs/eval/{name}).")
    @click.option(
        "--force", is_flag=True, help="Generate again even if a finished generation matches."
    )
    def command(args: tuple[str, ...], out: str | None, force: bool) -> None:
        from cm3leon.core.config import ConfigError, load_config
        from cm3leon.eval.cli import _user_errors

        path, overrides = _split(args)
        with _user_errors():
            try:
                cfg = load_config(schema, path, overrides)
            except ConfigError as err:
                raise ConfigError(
                    str(err).replace("<config>", f"eval protocol {name}", 1)
                ) from None
            try:
                result = run(cfg, Path(out or Path("runs") / "eval" / name), force=force)
            except ValueError as err:  # bad prompts/options/tokenizers reported by the generator
                raise click.ClickException(f"{type(err).__name__}: {err}") from None
        _echo(result)
        click.echo(f"wrote {Path(out or Path('runs') / 'eval' / name) / 'results.json'}")

    return command


def _register() -> None:
    from cm3leon.eval.generative import PROTOCOLS

    for name, (runner, schema, run, text) in PROTOCOLS.items():
        protocol_group.add_command(_make_command(name, runner, schema, run, text))


_register()
