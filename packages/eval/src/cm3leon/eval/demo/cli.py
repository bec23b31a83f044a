"""``cm3leon demo [CONFIG] [key=value ...] [--quick | --preset NAME] [--out DIR]``."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["demo_command"]


@click.command("demo")
@click.argument("args", nargs=-1)
@click.option("--quick", is_flag=True, help="Test-scale preset (configs/demo/quick.yaml; about a minute).")
@click.option("--preset", type=click.Choice(["full", "quick", "long"]), default=None,
              help="Preset: full (default, configs/demo/full.yaml), quick (= --quick), long "
                   "(configs/demo/long.yaml: long tail, plain-pretraining comparison; <= 2 h on 2 cores).")
@click.option("--out", default=None, help="Run directory (default runs/demo, runs/demo_quick with --quick, runs/demo_long with --preset long).")
@click.option("--stop-after", default=None, metavar="STAGE", help="Stop once this stage is complete.")
@click.option("--dry-run", is_flag=True, help="Write the stage configs and commands.sh; run nothing.")
@click.option("--no-progress", is_flag=True, help="No progress display (stage lines only).")
def demo_command(args: tuple[str, ...], quick: bool, preset: str | None, out: str | None,
                 stop_after: str | None, dry_run: bool, no_progress: bool) -> None:  # fmt: skip
    """Run the whole paper end to end on the built-in procedural world.

    \b
    world -> text BPE -> VQ tokenizer -> small CLIP -> FAISS bank -> retrieval-augmented
    shards -> pretraining -> SFT mixture -> fine-tuning -> evaluation -> report.html

    ARGS: an optional YAML config laid over the preset (configs/demo/full.yaml is the
    default; --quick and --preset long pick configs/demo/quick.yaml, long.yaml), then
    dotted key=value overrides (e.g. pretrain.max_duration=600ba).  Every stage is a public
    cm3leon command (see OUT/commands.sh), cached by its config fingerprint: re-running
    skips finished stages and resumes an interrupted one.
    """
    from cm3leon.core.config import ConfigError
    from cm3leon.eval.demo import DemoError, load_demo_config, run_demo

    path = args[0] if args and Path(args[0]).suffix in (".yaml", ".yml") and "=" not in args[0] else None
    overrides = list(args[1:] if path else args)
    if out is not None:
        overrides.append(f"out={out}")
    try:
        cfg = load_demo_config(path, overrides, quick=quick, preset=preset)
        result = run_demo(cfg, stop_after=stop_after, progress=not no_progress, dry_run=dry_run)
    except (ConfigError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    except DemoError as err:
        raise click.ClickException(f"{err}\nRe-run the same command to resume.") from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; re-run the same command to resume") from None
    if dry_run:
        click.echo(f"wrote {result.out / 'commands.sh'} and {result.out / 'configs'}/")
        click.echo((result.out / "commands.sh").read_text(encoding="utf-8"))
        return
    ran = sum(o.status != "cached" for o in result.outcomes)
    click.echo(f"{len(result.outcomes)} stages ({ran} run, {len(result.outcomes) - ran} cached) "
               f"in {result.seconds:.1f} s; run directory {result.out}")  # fmt: skip
    if result.report is not None:
        click.echo(f"report: {result.report}")
