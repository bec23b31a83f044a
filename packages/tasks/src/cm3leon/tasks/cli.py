"""``cm3leon tasks``: list SFT tasks, show their templates, render records, build mixtures.

::

    cm3leon tasks list                                   # every registered task
    cm3leon tasks show vqa2                              # templates, modalities, reader
    cm3leon tasks render vqa2 data/vqa -o split=val2014 --index 3 --images-to out/
    cm3leon tasks mixture configs/mixtures/demo.yaml output.path=runs/sft/mix

``render`` reads PATH with the task's reader and prints the rendered document
(``<break>`` between segments, images as ``[image WxH]``; with ``--images-to`` the
images are saved as PNG).  ``mixture`` loads a mixture YAML (schema ``sft_mixture``)
with dotted overrides and writes the balanced shards; it logs to ``OUT.mixture.log``.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import click

__all__ = ["format_document", "tasks_command"]


@click.group("tasks")
def tasks_command() -> None:
    """SFT tasks (Table 5): list them, render records, build balanced mixtures."""


@tasks_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(as_json: bool) -> None:
    """List every registered task with its modalities, reader and distribution."""
    from cm3leon.core.plugin_manager import get_registries

    rows = []
    for reg in get_registries().tasks:
        spec = reg.spec
        rows.append({"name": spec.name, "inputs": list(spec.inputs), "outputs": list(spec.outputs),
                     "reader": spec.reader if isinstance(spec.reader, str) else getattr(spec.reader, "__name__", None),
                     "distribution": reg.distribution, "description": spec.description})  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        io = f"{'+'.join(row['inputs'])} -> {'+'.join(row['outputs'])}"
        click.echo(f"{row['name']:<22} {io:<22} {row['distribution']:<16} {row['description']}")
    click.echo(f"{len(rows)} tasks")


@tasks_command.command("show")
@click.argument("name")
def show_command(name: str) -> None:
    """Print NAME's templates, declared modalities and reader."""
    task, spec = _task(name, ())
    click.echo(f"{spec.name}: {spec.description}")
    click.echo(f"  inputs: {', '.join(spec.inputs)}   outputs: {', '.join(spec.outputs)}")
    click.echo(f"  reader: {spec.reader}")
    for i, template in enumerate(task.templates):
        click.echo(f"  template {i}: {template}")


@tasks_command.command("render")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True))
@click.option("--index", type=int, default=0, show_default=True, help="Which record of the reader.")
@click.option("--count", type=int, default=1, show_default=True, help="How many records from --index.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the template choice (as data prepare --task).")
@click.option("-o", "--option", "options", multiple=True, help="KEY=VALUE for the reader (e.g. split=val).")
@click.option("-t", "--task-option", "task_options", multiple=True, help="KEY=VALUE for the task factory.")
@click.option("--images-to", type=click.Path(file_okay=False), default=None, help="Save images as PNG here.")
def render_command(name: str, path: str, index: int, count: int, seed: int, options: tuple[str, ...],
                   task_options: tuple[str, ...], images_to: str | None) -> None:  # fmt: skip
    """Read PATH with task NAME's reader and print the rendered documents.

    A record renders exactly as ``cm3leon data prepare --task`` writes it with the same
    ``--seed`` (and as the first source of a ``tasks mixture``).
    """
    from cm3leon.core.task_render import render_task_records

    task, spec = _task(name, task_options)
    if spec.reader is None:
        raise click.ClickException(f"task {name!r} has no reader")
    stats: dict[str, int] = {}
    try:
        records = spec.resolve("reader")(path, stats=stats, **_parse(options, "--option"))
        chosen = list(itertools.islice(records, index, index + count))
        if not chosen:
            raise click.ClickException(f"{path}: fewer than {index + 1} records ({stats})")
        for doc in render_task_records(task, chosen, name=name, seed=seed, where=path, start=index):
            click.echo(f"--- {doc.id} (template {doc.meta.get('template')})")
            click.echo(format_document(doc, images_to=Path(images_to) if images_to else None))
    except ValueError as err:
        raise click.ClickException(str(err)) from None


@tasks_command.command("mixture")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.argument("overrides", nargs=-1)
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help="Log file (default: OUTPUT.mixture.log next to the output).")  # fmt: skip
def mixture_command(config: str, overrides: tuple[str, ...], log_file: str | None) -> None:
    """Build the SFT mixture of CONFIG (with dotted OVERRIDES) and print its report."""
    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.core.registry import UnknownComponentError
    from cm3leon.tasks.mixture import MixtureConfig, build_mixture

    try:
        cfg = load_config(MixtureConfig, config, overrides)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    log_path = Path(log_file or f"{str(cfg.output.path).rstrip('/')}.mixture.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("cm3leon")
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    try:
        report = build_mixture(cfg)
    except (ValueError, FileExistsError, UnknownComponentError) as err:
        logging.getLogger("cm3leon.tasks.mixture").error("mixture failed: %s", err)
        raise click.ClickException(str(err)) from None
    finally:
        root.removeHandler(handler)
        handler.close()
    click.echo(json.dumps(report.as_dict(), indent=2))


def format_document(doc: Any, *, images_to: Path | None = None) -> str:
    """Segments joined by `` <break> ``; images as ``[image WxH]`` (and saved as PNG)."""
    from cm3leon.core.documents import TextSegment

    parts = []
    for i, seg in enumerate(doc.segments):
        if isinstance(seg, TextSegment):
            parts.append(seg.text)
            continue
        image = seg.pil()
        label = f"[image {image.size[0]}x{image.size[1]}]"
        if images_to is not None:
            from cm3leon.core.documents import image_to_png
            from cm3leon.core.io import atomic_write_bytes

            file = images_to / f"{doc.id.replace('/', '_')}_{i}.png"
            atomic_write_bytes(file, image_to_png(image))
            label = f"[image {image.size[0]}x{image.size[1]}: {file}]"
        parts.append(label)
    return " <break> ".join(parts)


def _task(name: str, options: tuple[str, ...]) -> tuple[Any, Any]:
    from cm3leon.core.plugin_manager import get_registries
    from cm3leon.core.registry import UnknownComponentError

    try:
        spec = get_registries().tasks.get(name)
    except UnknownComponentError as err:
        raise click.UsageError(str(err)) from None
    parsed = _parse(options, "--task-option")
    try:
        return spec.build(**parsed), spec
    except TypeError as err:
        raise click.UsageError(f"task {name!r}: bad --task-option {parsed}: {err}") from None


def _parse(items: tuple[str, ...], hint: str) -> dict[str, Any]:
    import yaml

    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=hint)
        parsed[key] = yaml.safe_load(value)
    return parsed
