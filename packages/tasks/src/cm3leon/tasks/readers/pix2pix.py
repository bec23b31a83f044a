"""InstructPix2Pix readers: the released sample folders and the parquet release.

Folder layout (``clip-filtered-dataset``)::

    <root>/<sample>/prompt.json     {"input": "<input caption>", "edit": "<instruction>",
                                     "output": "<edited caption>"}
    <root>/<sample>/<seed>_0.jpg    input image of one seed
    <root>/<sample>/<seed>_1.jpg    edited image of that seed

Every ``<seed>_0`` / ``<seed>_1`` pair of a sample is one record (``id`` =
``<sample>/<seed>``).  A pair with one half missing is a bad record.  With ``split``,
sample folders are read from ``<root>/<split>/`` when that folder exists.

Parquet layout (the Hugging Face ``instructpix2pix`` datasets): columns
``original_prompt``, ``original_image``, ``edit_prompt``, ``edited_prompt``,
``edited_image``, the image columns being structs ``{"bytes": ..., "path": ...}``.
``path`` is a ``.parquet`` file or a folder of them (with ``split``, only files whose
name contains it); rows are streamed a batch at a time.  Both layouts are parsed by
:mod:`cm3leon.core.formats.instruct_pix2pix`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cm3leon.core.formats.instruct_pix2pix import (
    PARQUET_COLUMNS,
    decode_image_cell,
    iter_parquet_rows,
    read_prompt,
    sample_seeds,
)
from cm3leon.tasks.readers.common import (
    FormatError,
    ReadContext,
    RecordError,
    entry_field,
    load_image,
    reader,
)

__all__ = ["PARQUET_COLUMNS", "read_instructpix2pix", "read_pix2pix_folder", "read_pix2pix_parquet"]


@reader
def read_instructpix2pix(path: Path, *, split: str | None, ctx: ReadContext) -> Iterator[dict]:
    """Either layout, chosen by what ``path`` holds (parquet files or sample folders)."""
    parquet = [path] if path.suffix == ".parquet" else sorted(path.glob("*.parquet")) if path.is_dir() else []
    if parquet:
        yield from _parquet(parquet, split, ctx, path)
    elif path.is_dir():
        yield from _folders(path / split if split and (path / split).is_dir() else path, ctx)
    else:
        raise FormatError(f"{path}: expected a .parquet file or a folder of samples / parquet files")


@reader
def read_pix2pix_folder(path: Path, *, split: str | None, ctx: ReadContext) -> Iterator[dict]:
    """Only the folder layout."""
    yield from _folders(path / split if split and (path / split).is_dir() else path, ctx)


@reader
def read_pix2pix_parquet(path: Path, *, split: str | None, ctx: ReadContext) -> Iterator[dict]:
    """Only the parquet layout."""
    yield from _parquet([path] if path.is_file() else sorted(path.glob("*.parquet")), split, ctx, path)


def _folders(root: Path, ctx: ReadContext) -> Iterator[dict]:
    prompts = sorted(root.glob("*/prompt.json")) or ([root / "prompt.json"] if (root / "prompt.json").is_file() else [])
    if not prompts:
        raise FormatError(f"{root}: no <sample>/prompt.json folders")
    for prompt_file in prompts:
        sample = prompt_file.parent
        prompt = ctx.attempt(lambda f=prompt_file: read_prompt(f))
        if prompt is None:
            continue
        seeds = sample_seeds(sample)
        if not seeds:
            ctx.reject(RecordError(f"{prompt_file}: no <seed>_0.jpg / <seed>_1.jpg images", reason="missing_image"))
        for seed in seeds:
            where = f"{prompt_file}: seed {seed}"
            record = ctx.build(lambda s=seed, w=where, d=sample, p=prompt: {
                "id": f"{d.name}/{s}", "image": load_image(d / f"{s}_0.jpg", w),
                "instruction": p.edit.strip(), "edited_image": load_image(d / f"{s}_1.jpg", w),
                "input_caption": p.input.strip(), "output_caption": p.output.strip()})  # fmt: skip
            if record is not None:
                yield record


def _parquet(files: list[Path], split: str | None, ctx: ReadContext, root: Path) -> Iterator[dict]:
    files = [f for f in files if split is None or split in f.name or len(files) == 1]
    if not files:
        raise FormatError(f"{root}: no .parquet files" + (f" for split {split!r}" if split else ""))
    for file in files:
        for row, values in iter_parquet_rows(file):
            where = f"{file}: row {row}"
            record = ctx.build(lambda v=values, w=where, r=row, f=file: {
                "id": f"{f.stem}/{r}",
                "image": decode_image_cell(v["original_image"], f"{w} original_image"),
                "instruction": entry_field(v, "edit_prompt", str, w).strip(),
                "edited_image": decode_image_cell(v["edited_image"], f"{w} edited_image"),
                "input_caption": str(v.get("original_prompt") or ""),
                "output_caption": str(v.get("edited_prompt") or "")})  # fmt: skip
            if record is not None:
                yield record
