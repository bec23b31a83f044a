"""``cm3leon world``: export, inspect and score the procedural world."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import click

__all__ = ["world_command"]

log = logging.getLogger(__name__)


@click.group("world")
def world_command() -> None:
    """The procedural world: scenes, every Table 5 task's records, and a scorer."""


@world_command.command("export")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--n", "n", required=True, type=click.IntRange(min=1), help="Number of scenes.")
@click.option(
    "--seed", default=0, show_default=True, type=click.IntRange(min=0), help="World seed."
)
@click.option(
    "--image-size",
    default=32,
    show_default=True,
    type=click.IntRange(32, 128),
    help="Image side (px).",
)
@click.option(
    "--formats",
    default="all",
    show_default=True,
    help="Comma-separated formats: coco, flickr30k, vqa2, okvqa, vizwiz, scienceqa, image_paragraph, "
    "localized_narratives, instruct_pix2pix, ocr, depth, pretrain, entities (or 'all').",
)
@click.option(
    "--entity-docs", default=0, show_default=True, type=click.IntRange(min=0),
    help="Long-tail entity documents mixed into 'pretrain' and listed by 'entities'.",
)  # fmt: skip
@click.option("--entities", default=300, show_default=True, type=click.IntRange(min=1),
              help="Size of the entity catalogue.")  # fmt: skip
@click.option("--entity-zipf", default=1.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Exponent of the entities' Zipfian frequency.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an export made with other parameters.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def export_command(
    out: str, n: int, seed: int, image_size: int, formats: str, entity_docs: int, entities: int,
    entity_zipf: float, overwrite: bool, no_progress: bool,
) -> None:  # fmt: skip
    """Write N scenes in the public dataset formats (idempotent, resumable, atomic per format)."""
    from cm3leon.world.export import export_world

    try:
        manifest = export_world(
            out, n=n, seed=seed, image_size=image_size, formats=formats, overwrite=overwrite,
            progress=not no_progress, entity_docs=entity_docs, entities=entities,
            entity_zipf=entity_zipf,
        )  # fmt: skip
    except (FileExistsError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    for name in manifest["written"]:
        click.echo(f"wrote   {Path(out) / name}  {manifest['formats'][name]}")
    for name in manifest["skipped"]:
        click.echo(f"skipped {Path(out) / name}  (already complete)")


@world_command.command("show")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--index", default=0, show_default=True, type=click.IntRange(min=0), help="Scene index."
)
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(32, 128))
@click.option(
    "--save", type=click.Path(dir_okay=False), default=None, help="Also save the image (PNG, x8)."
)
def show_command(seed: int, index: int, image_size: int, save: str | None) -> None:
    """Print one scene's ground truth and every record derived from it as JSON."""
    from PIL import Image

    from cm3leon.world.records import World

    ex = World(seed, image_size=image_size).example(index)
    record = {
        "index": index,
        "split": ex.split,
        "scene": ex.scene.to_dict(),
        "captions": ex.captions,
        "paragraph": ex.paragraph,
        "narrative": ex.narrative["caption"],
        "vqa": [
            {"question": q.question, "answer": q.answer, "answers": list(q.answers)} for q in ex.vqa
        ],
        "okvqa": [{"question": q.question, "answer": q.answer} for q in ex.okvqa],
        "vizwiz": {
            "question": ex.vizwiz.question,
            "answer": ex.vizwiz.answer,
            "answerable": ex.vizwiz.answerable,
        },
        "scienceqa": {
            "question": ex.scienceqa.question,
            "choices": list(ex.scienceqa.choices),
            "answer": ex.scienceqa.answer,
        },
        "edit": {"kind": ex.edit.kind, "instruction": ex.edit.instruction},
        "ocr": ex.ocr_text,
        "detections": ex.detections(),
    }
    click.echo(json.dumps(record, indent=2))
    if save:
        size = ex.scene.image_size * 8
        Image.fromarray(ex.image).resize((size, size), Image.NEAREST).save(save)
        click.echo(f"saved {save}", err=True)


def _image_files(folder: str) -> list[Path]:
    """The PNG/JPEG files directly in ``folder``, sorted by path."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


@world_command.command("score")
@click.argument("images", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--scenes",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="ground_truth/scenes.jsonl of a world export.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Write the results JSON here."
)
@click.option(
    "--names-from",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Score only the images whose file stem also names an image in this folder "
    "(e.g. originals against the reconstructions made of them: the same set).",
)
def score_command(images: str, scenes: str, out: str | None, names_from: str | None) -> None:
    """Score generated IMAGES (files named by image id, e.g. 000000000042.png) against the scenes.

    A file's stem must be the image id itself (digits only): other files (e.g. the long
    tail's ``entity-00000025.png``, which is not scene 25) are listed as unmatched, never
    scored against a scene.  Prints mean colour/shape/position/count accuracies, the number
    of images scored, and the chance levels.
    """
    from PIL import Image

    from cm3leon.core.io import atomic_write_json
    from cm3leon.world.scene import Scene
    from cm3leon.world.scorer import CHANCE, aggregate, score_text_to_image

    truth = {}
    for line_no, line in enumerate(Path(scenes).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            truth[int(row["image_id"])] = Scene.from_dict(
                row["scene"], source=f"{scenes}:{line_no}"
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise click.ClickException(
                f"{scenes}:{line_no}: bad ground-truth line: {err}"
            ) from None
    scores, missing = [], []
    files = _image_files(images)
    if names_from is not None:
        wanted = {p.stem for p in _image_files(names_from)}
        files = [p for p in files if p.stem in wanted]
    for path in files:
        match = re.fullmatch(r"(\d+)", path.stem)
        if match is None or int(match.group(1)) not in truth:
            missing.append(path.name)
            continue
        with Image.open(path) as im:
            scores.append(score_text_to_image(im.convert("RGB"), truth[int(match.group(1))]))
    if not scores:
        raise click.ClickException(f"{images}: no image named by an image id of {scenes}")
    result = {
        "n": len(scores),
        "unmatched_files": missing,
        "scores": aggregate(scores),
        "chance": CHANCE,
    }
    if out:
        atomic_write_json(out, result)
    click.echo(json.dumps(result, indent=2))
