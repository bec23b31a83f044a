"""``cm3leon retrieval``: train the small CLIP, build banks, augment shards, query.

::

    cm3leon retrieval train-clip configs/retrieval/clip_small.yaml
    cm3leon retrieval estimate   configs/retrieval/bank.yaml --documents 100000000
    cm3leon retrieval build      configs/retrieval/bank.yaml
    composer -n 2 -m cm3leon.retrieval.build configs/retrieval/bank.yaml   # sharded
    cm3leon retrieval augment    configs/retrieval/augment.yaml
    composer -n 2 -m cm3leon.retrieval.augment configs/retrieval/augment.yaml   # two ranks
    cm3leon retrieval query runs/retrieval/bank --text "a red circle" -k 2 --grid q.png
    cm3leon retrieval convert-encoder ViT-B-32.pt runs/retrieval/clip-vit-b-32-openai

Config commands take ``CONFIG [dotted.key=value ...]`` and read their own section
(``train_clip``, ``bank``, ``augment``) of the file; each logs to ``OUTPUT.log``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

__all__ = ["render_grid", "retrieval_command"]


@click.group("retrieval", context_settings={"help_option_names": ["-h", "--help"]})
def retrieval_command() -> None:
    """Dense CLIP / BM25 retrieval: small-CLIP training, memory banks, augmented shards."""


_PROGRESS = click.option("--progress/--no-progress", default=True, show_default=True,
                         help="Show progress bars (they go to stderr).")


@contextlib.contextmanager
def _file_logging(path: str | Path) -> Iterator[None]:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("cm3leon")
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def _section(config: str, overrides: tuple[str, ...], name: str) -> Any:
    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.retrieval.config import RetrievalConfig, section

    try:
        return section(load_config(RetrievalConfig, config, list(overrides)), name, source=config)
    except (ConfigError, ValueError) as err:
        raise click.ClickException(str(err)) from None


@retrieval_command.command("train-clip")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@_PROGRESS
def train_clip_command(config: str, overrides: tuple[str, ...], progress: bool) -> None:
    """Train (or resume) the small CLIP of CONFIG's train_clip section; print recall@1/@5."""
    from cm3leon.retrieval.train_clip import train_clip

    cfg = _section(config, overrides, "train_clip")
    with _file_logging(f"{cfg.output.rstrip('/')}.log"):
        try:
            metrics = train_clip(cfg, progress=progress)
        except (ValueError, FileNotFoundError) as err:
            raise click.ClickException(str(err)) from None
    if metrics:
        click.echo(json.dumps({"encoder": metrics["encoder"], **metrics["eval"]}, indent=2))


@retrieval_command.command("build")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--overwrite", is_flag=True, help="Rebuild even if the bank exists.")
@_PROGRESS
def build_command(config: str, overrides: tuple[str, ...], overwrite: bool, progress: bool) -> None:
    """Build the memory bank of CONFIG's bank section (resumable; sharded under composer -n N)."""
    from cm3leon.retrieval.bank import read_manifest
    from cm3leon.retrieval.build import build_bank

    cfg = _section(config, overrides, "bank")
    with _file_logging(f"{cfg.output.rstrip('/')}.log"):
        try:
            path = build_bank(cfg, overwrite=overwrite, progress=progress,
                              report=lambda text: click.echo(text, err=True))
        except (ValueError, FileNotFoundError, FileExistsError) as err:
            raise click.ClickException(str(err)) from None
    m = read_manifest(path)
    click.echo(json.dumps({"bank": str(path), "kind": m.kind, "size": m.size, "dim": m.dim,
                           "factory": m.factory}, indent=2))


@retrieval_command.command("estimate")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--documents", type=click.IntRange(min=1), default=None,
              help="Documents to size for (default: those of the config's data.shards).")
@click.option("--dim", type=click.IntRange(min=1), default=None,
              help="Vector dimension (default: embed_dim of the config's encoder directory).")
@click.option("--world-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ranks of the build (composer -n N).")
@click.option("--id-chars", type=click.IntRange(min=1), default=16, show_default=True,
              help="Average document-id length, for ids.json.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def estimate_command(config: str, overrides: tuple[str, ...], documents: int | None, dim: int | None,
                     world_size: int, id_chars: int, as_json: bool) -> None:
    """Print the disk and peak-RAM estimate of building CONFIG's bank (builds nothing)."""
    from cm3leon.retrieval.estimate import estimate_for_config

    cfg = _section(config, overrides, "bank")
    if cfg.kind != "faiss":
        raise click.ClickException(f"{config}: bank.kind is {cfg.kind!r}; the estimate covers faiss banks")
    try:
        est = estimate_for_config(cfg, documents=documents, dim=dim, world_size=world_size, id_chars=id_chars)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(est.to_json(), indent=2) if as_json else est.render())


@retrieval_command.command("augment")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--overwrite", is_flag=True, help="Rewrite even if the output exists.")
@_PROGRESS
def augment_command(config: str, overrides: tuple[str, ...], overwrite: bool, progress: bool) -> None:
    """Write retrieval-augmented token shards (Figure 9) from CONFIG's augment section.

    Resumable (complete parts in OUTPUT.work are kept); on N ranks:
    composer -n N -m cm3leon.retrieval.augment CONFIG [key=value ...].
    """
    from cm3leon.retrieval.augment import augment_shards

    cfg = _section(config, overrides, "augment")
    with _file_logging(f"{cfg.output.rstrip('/')}.log"):
        try:
            report = augment_shards(cfg, overwrite=overwrite, progress=progress)
        except (ValueError, KeyError, FileNotFoundError, FileExistsError) as err:
            raise click.ClickException(str(err)) from None
    click.echo(json.dumps(report, indent=2))


@retrieval_command.command("query")
@click.argument("bank", type=click.Path(file_okay=False))
@click.option("--text", default=None, help="Query text.")
@click.option("--image", "image_path", type=click.Path(dir_okay=False), default=None, help="Query image file.")
@click.option("-k", "k", type=int, default=2, show_default=True, help="Documents to return.")
@click.option("--retriever", default=None, help="Registered retriever (default: from the bank kind).")
@click.option("--encoder", default=None, help="CLIP encoder directory (default: the bank's).")
@click.option("--image-tokenizer", default=None, help="NAME:DIR to decode VQ-only images for the grid.")
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="Write a PNG grid here.")
@click.option("--training", is_flag=True, help="Training mode: query dropout and random selection.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def query_command(bank: str, text: str | None, image_path: str | None, k: int, retriever: str | None,
                  encoder: str | None, image_tokenizer: str | None, grid: str | None, training: bool,
                  as_json: bool) -> None:
    """Answer a text and/or image query against BANK: ids, scores, relevance, captions.

    ``score`` is the search score of the query part that found the document (``by``);
    ``relevance`` is its relevance to the whole query (1.0 = the query itself), which the
    "relevance <= 0.9" rule reads.
    """
    from cm3leon.core.documents import Document
    from cm3leon.core.images import load_image
    from cm3leon.core.plugin_manager import get_registries
    from cm3leon.retrieval.bank import read_manifest

    if text is None and image_path is None:
        raise click.UsageError("give --text and/or --image")
    try:
        kind = read_manifest(bank).kind
        name = retriever or {"faiss": "clip", "bm25": "bm25"}[kind]
        options: dict[str, Any] = {"bank": bank}
        if encoder:
            options["encoder"] = encoder
        r = get_registries().retrievers.build(name, **options)
        parts: list[Any] = [p for p in (text, load_image(image_path) if image_path else None) if p is not None]
        query = Document.of(*parts, id="query")
        hits = r.retrieve_hits([query], k, training=training)[0]
        docs = r.searcher.documents([h.row for h in hits]) if hits else []
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    rows = [{"rank": i + 1, "id": h.id, "score": round(h.score, 4), "relevance": round(h.relevance, 4),
             "by": h.modality, "caption": d.text}
            for i, (h, d) in enumerate(zip(hits, docs, strict=True))]
    if grid:
        decode = _decoder(image_tokenizer)
        labels = [f"{h.score:.3f} ({h.modality}) r{h.relevance:.2f}" for h in hits]
        render_grid(query, docs, labels, grid, code_decoder=decode)
    if as_json:
        click.echo(json.dumps({"query": {"text": text, "image": image_path}, "results": rows, "grid": grid}, indent=2))
        return
    if not rows:
        click.echo("no documents passed the retrieval rules")
    for row in rows:
        click.echo(f"{row['rank']:>2}  {row['score']:>7.4f}  {row['relevance']:>7.4f}  {row['by']:<5}  "
                   f"{row['id']}  {row['caption']}")
    if grid:
        click.echo(f"grid: {grid}")


@retrieval_command.command("convert-encoder")
@click.argument("src", type=click.Path(exists=True))
@click.argument("out", type=click.Path())
@click.option("--model", default=None,
              help="open_clip architecture of a state-dict SRC (ViT-B-32); OpenAI archives imply theirs.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def convert_encoder_command(src: str, out: str, model: str | None, overwrite: bool) -> None:
    """Write SRC's open_clip weights as the encoder directory OUT that banks load.

    SRC: an open_clip .safetensors, a torch.save'd state dict (.bin/.pt, read with
    weights_only=True), OpenAI's TorchScript archive (ViT-B-32.pt: only the published
    files, by SHA-256; becomes ViT-B-32-quickgelu), or an open_clip / Hugging Face hub folder.
    """
    from cm3leon.retrieval.convert import convert_encoder

    try:
        report = convert_encoder(src, out, model=model, overwrite=overwrite)
    except (ValueError, FileExistsError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(report, indent=2))


def _decoder(spec: str | None) -> Any:
    if not spec:
        return None
    from cm3leon.core.tokenization import resolve_tokenizer

    return resolve_tokenizer(spec, "image").decode


def render_grid(query: Any, docs: list[Any], labels: list[str], path: str | Path, *, cell: int = 128,
                code_decoder: Any = None) -> Path:
    """A PNG row: the query, then each retrieved document (image + caption + label)."""
    from PIL import Image, ImageDraw

    from cm3leon.core.documents import image_to_png
    from cm3leon.core.io import atomic_write_bytes

    columns = [(query, "query"), *zip(docs, labels, strict=True)]
    text_h = 48
    canvas = Image.new("RGB", (cell * len(columns), cell + text_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (doc, label) in enumerate(columns):
        image = _first_pixels(doc, code_decoder)
        if image is not None:
            canvas.paste(image.resize((cell - 8, cell - 8)), (i * cell + 4, 4))
        else:
            draw.rectangle([i * cell + 4, 4, (i + 1) * cell - 4, cell - 4], outline="grey")
        caption = doc.text[:60]
        for line, chunk in enumerate((label, caption[:20], caption[20:40])):
            draw.text((i * cell + 4, cell + 2 + 14 * line), chunk, fill="black")
    return atomic_write_bytes(path, image_to_png(canvas))


def _first_pixels(doc: Any, code_decoder: Any) -> Any:
    import torch

    for seg in doc.images:
        if seg.image is not None:
            return seg.pil()
        if code_decoder is not None:
            return code_decoder(torch.tensor([seg.codes], dtype=torch.long))[0]
    return None
