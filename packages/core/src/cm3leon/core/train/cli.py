"""``cm3leon train``: run, export, plot and check.

::

    cm3leon train CONFIG [key=value ...]            # = cm3leon train run CONFIG ...
    cm3leon train CONFIG --allow-config-change optim.lr   # resume although optim.lr changed
    composer -n 8 -m cm3leon.core.train CONFIG ...  # same run, one process per GPU
    cm3leon train export CHECKPOINT OUT             # safetensors export
    cm3leon train plot RUN_DIR_OR_JSONL [-o PNG]    # loss curves
    cm3leon train check CHECKPOINT                  # is it safe to load?
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["main", "train_command"]

SUBCOMMANDS = ("run", "export", "plot", "check")


class _DefaultRunGroup(click.Group):
    """A group where ``cm3leon train CONFIG`` means ``cm3leon train run CONFIG``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("train", cls=_DefaultRunGroup, context_settings={"help_option_names": ["-h", "--help"]})
def train_command() -> None:
    """Train CM3Leon with Composer (pretraining or SFT): `cm3leon train CONFIG [key=value ...]`.

    Multi-process / multi-node: `composer -n N -m cm3leon.core.train CONFIG [key=value ...]`.
    """


@train_command.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--allow-config-change", "allow", multiple=True, metavar="KEY",
              help="Resume although dotted config key KEY (fnmatch pattern, e.g. optim.lr, "
                   "'assets.*') differs from the checkpoint's; repeatable.  Added to "
                   "checkpoint.allow_changes.")
def run_command(config: str, overrides: tuple[str, ...], allow: tuple[str, ...]) -> None:
    """Run (or auto-resume) the training described by CONFIG with dotted OVERRIDES.

    Resuming fails before training if the config, data or architecture differs from the
    checkpoint's (the differing keys are listed), unless the key is allowed.
    """
    _run(config, list(overrides), list(allow))


def _run(config: str, overrides: list[str], allow: list[str] | None = None) -> None:
    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.core.locks import DirectoryLockedError
    from cm3leon.core.shards import ShardIntegrityError
    from cm3leon.core.train.composer_checkpoints import UnsafeCheckpointError
    from cm3leon.core.train.config import TrainConfig, check_train_config

    try:
        cfg = load_config(TrainConfig, config, overrides)
        cfg.checkpoint.allow_changes = [*cfg.checkpoint.allow_changes, *(allow or [])]
        check_train_config(cfg, source=config)  # = `cm3leon config validate --schema train`
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    from cm3leon.core.train.loop import train

    try:
        result = train(cfg)
    except (ConfigError, ShardIntegrityError, UnsafeCheckpointError, DirectoryLockedError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"trained {result.batches} batches; last loss {result.last_loss}; "
               f"checkpoint {result.latest_checkpoint}; metrics {result.metrics}")


@train_command.command("export")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace an existing export directory.")
def export_command(checkpoint: str, out: str, overwrite: bool) -> None:
    """Export the weights of CHECKPOINT (.pt, latest-rank0.pt or sharded dir) to OUT as safetensors."""
    from cm3leon.core.train.composer_checkpoints import UnsafeCheckpointError
    from cm3leon.core.train.export import export_checkpoint

    try:
        path = export_checkpoint(checkpoint, out, overwrite=overwrite)
    except (UnsafeCheckpointError, ValueError, FileExistsError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"exported {checkpoint} -> {path}")


@train_command.command("plot")
@click.argument("source", type=click.Path(exists=True))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="PNG to write (default: loss_curve.png next to the metrics).")
@click.option("--key", "keys", multiple=True, help="Metric to plot (repeatable).")
def plot_command(source: str, out: str | None, keys: tuple[str, ...]) -> None:
    """Plot the metrics.jsonl of a run directory (or the file itself) as a PNG."""
    from cm3leon.core.train.logs import DEFAULT_CURVES, plot_metrics

    jsonl = Path(source) / "metrics.jsonl" if Path(source).is_dir() else Path(source)
    png = Path(out) if out else jsonl.with_name("loss_curve.png")
    try:
        plot_metrics(jsonl, png, keys=keys or DEFAULT_CURVES)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(str(png))


@train_command.command("check")
@click.argument("checkpoint", type=click.Path())
def check_command(checkpoint: str) -> None:
    """Check that CHECKPOINT can be loaded without running code (weights-only allowlist)."""
    from cm3leon.core.train.composer_checkpoints import UnsafeCheckpointError, check_checkpoint

    try:
        check_checkpoint(checkpoint)
    except (UnsafeCheckpointError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{checkpoint}: safe to load")


def main(argv: list[str] | None = None) -> None:
    """``python -m cm3leon.core.train CONFIG [key=value ...]`` (also under ``composer -m``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    train_command.main(args=args, prog_name="python -m cm3leon.core.train", standalone_mode=True)
