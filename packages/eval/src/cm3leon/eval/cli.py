"""``cm3leon eval ...`` (the protocols, FID, feature stats, grids) and ``cm3leon ablate``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import click
import yaml

__all__ = ["ablate_command", "eval_group"]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn input errors into one-line click errors (tracebacks are for bugs)."""
    from cm3leon.core.config import ConfigError
    from cm3leon.core.registry import UnknownComponentError
    from cm3leon.eval.formats import FormatError
    from cm3leon.eval.metrics.features import EncoderNotFoundError
    from cm3leon.eval.metrics.frechet import FrechetError
    from cm3leon.eval.metrics.inception import InceptionWeightsError
    from cm3leon.eval.metrics.ptb import PTBTokenizerError

    try:
        yield
    except (
        ConfigError, EncoderNotFoundError, FileNotFoundError, FormatError, FrechetError,
        InceptionWeightsError, PTBTokenizerError, UnknownComponentError,
    ) as err:  # fmt: skip
        raise click.ClickException(str(err)) from None


def _options(pairs: Sequence[str], weights: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected key=value", param_hint="--option")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    if weights:
        out["weights_path"] = weights
    return out


def _emit(result: dict[str, Any], out: str | None) -> None:
    from cm3leon.core.io import atomic_write_json

    metrics = result.get("metrics", {})
    click.echo(
        "  ".join(
            f"{k} = {v:.4f}" if isinstance(v, float) else f"{k} = {v}" for k, v in metrics.items()
        )
    )
    if out:
        atomic_write_json(out, result)
        click.echo(f"wrote {out}")
    else:
        click.echo(
            json.dumps({k: v for k, v in result.items() if not k.startswith("per_")}, indent=2)
        )


_features_opts = [
    click.option(
        "--features", default="inception", show_default=True, help="Registered feature extractor."
    ),
    click.option(
        "--weights",
        default=None,
        help="Inception weights file (pt_inception-2015-12-05-6726825d.pth).",
    ),
    click.option(
        "--option", "-O", "options", multiple=True, help="Extractor option key=value (repeatable)."
    ),
    click.option("--batch-size", default=32, show_default=True),
]


def _with_features(fn: Any) -> Any:
    for deco in reversed(_features_opts):
        fn = deco(fn)
    return fn


@click.group("eval")
def eval_group() -> None:
    """Evaluate a checkpoint end to end or score prediction files (one command per
    protocol: text-to-image, captioning, vqa, editing); FID, feature stats, grids."""


def _add_protocols() -> None:
    from cm3leon.eval.protocols.cli import add_protocol_commands

    add_protocol_commands(eval_group)


@eval_group.command("fid")
@click.argument("real", type=click.Path(exists=True))
@click.argument("fake", type=click.Path(exists=True))
@_with_features
@click.option("--method", type=click.Choice(["eigh", "sqrtm"]), default="eigh", show_default=True)
@click.option("--save-real-stats", default=None, help="Also write REAL's stats (.npz) for reuse.")
@click.option("--allow-rank-deficient", is_flag=True, default=False,
              help="Compute FID although a set has fewer samples than feature dimensions + 1 "
                   "(biased; the result says rank_deficient: true).")  # fmt: skip
@click.option("--out", default=None, help="Write the JSON result here.")
def fid_command(
    real: str,
    fake: str,
    features: str,
    weights: str | None,
    options: tuple[str, ...],
    batch_size: int,
    method: str,
    save_real_stats: str | None,
    allow_rank_deficient: bool,
    out: str | None,
) -> None:
    """FID between REAL and FAKE (image folders, document shards or .npz stats files).

    A set with fewer samples than feature dimensions + 1 (2,049 for Inception) is refused,
    naming it and both numbers, unless ``--allow-rank-deficient``.
    """
    from cm3leon.eval.metrics.frechet import RankDeficientError
    from cm3leon.eval.protocols.fid import fid_between

    with _user_errors():
        try:
            res = fid_between(
                real,
                fake,
                features=features,
                features_options=_options(options, weights),
                batch_size=batch_size,
                method=method,
                save_real_stats=save_real_stats,
                allow_rank_deficient=allow_rank_deficient,
            )
        except RankDeficientError as err:
            raise click.ClickException(f"{err} (on the command line: --allow-rank-deficient)") from None
    _emit(res, out)


@eval_group.command("stats")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@_with_features
@click.option("--out", required=True, help="Output .npz (pytorch-fid format: mu, sigma).")
def stats_command(
    folder: str,
    features: str,
    weights: str | None,
    options: tuple[str, ...],
    batch_size: int,
    out: str,
) -> None:
    """Feature statistics of a reference FOLDER (images or document shards), for reuse."""
    from cm3leon.eval.metrics.fid import build_feature_extractor
    from cm3leon.eval.protocols.fid import feature_stats

    with _user_errors():
        stats = feature_stats(
            folder,
            build_feature_extractor(features, _options(options, weights)),
            batch_size=batch_size,
        )
        stats.save(out)
    click.echo(f"wrote {out} ({stats.num_samples} images, {stats.dim} features)")


@eval_group.command("grid")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, help="Output PNG.")
@click.option("--ncols", default=8, show_default=True)
@click.option("--limit", default=64, show_default=True, help="At most this many images.")
def grid_command(folder: str, out: str, ncols: int, limit: int) -> None:
    """A sample grid of the images in FOLDER (sorted by path)."""
    from PIL import Image

    from cm3leon.eval.formats import list_images
    from cm3leon.eval.grid import save_grid

    with _user_errors():
        files = list_images(folder)[:limit]
        images = []
        for f in files:
            with Image.open(f) as im:
                images.append(im.convert("RGB"))
        save_grid(out, images, ncols=ncols, captions=[f.stem for f in files])
    click.echo(f"wrote {out} ({len(files)} images)")


@click.command("ablate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option(
    "--out", default=None, help="Output directory (default: output_dir or runs/ablations/NAME)."
)
@click.option("--force", is_flag=True, help="Re-run finished runs too.")
@click.option("--keep-going", is_flag=True, help="Record failed runs and continue.")
@click.option("--dry-run", is_flag=True, help="Validate every run and write the plan; run nothing.")
@click.option("--only", multiple=True, help="Run only this run name (repeatable).")
@click.option(
    "--tracker",
    "trackers",
    multiple=True,
    type=click.Choice(["tensorboard", "mlflow", "wandb"]),
    help="Also log every finished run to this tracker, default options (repeatable; "
    "the file's trackers: section takes options).",
)
def ablate_command(
    path: str,
    overrides: tuple[str, ...],
    out: str | None,
    force: bool,
    keep_going: bool,
    dry_run: bool,
    only: tuple[str, ...],
    trackers: tuple[str, ...],
) -> None:
    """Expand the ablation file PATH (base + matrix) into runs, run the unfinished ones, and
    write results.md/.csv, pivot tables and plots.  OVERRIDES (dotted key=value) edit the file."""
    from cm3leon.eval.ablation.execute import AblationRunError, run_ablation

    with _user_errors():
        try:
            res = run_ablation(
                path,
                overrides=overrides,
                out_dir=out,
                force=force,
                keep_going=keep_going,
                dry_run=dry_run,
                only=only,
                trackers=trackers,
            )
        except AblationRunError as err:
            raise click.ClickException(str(err)) from None
    counts = ", ".join(
        f"{res.count(s)} {s}" for s in ("done", "skipped", "failed", "pending") if res.count(s)
    )
    click.echo(f"{res.config.name}: {len(res.outcomes)} runs ({counts})")
    for p in res.report_files:
        click.echo(f"  {p}")
    if res.count("failed"):
        raise SystemExit(1)


_add_protocols()
