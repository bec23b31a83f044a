"""Localized Narratives reader: the public ``*_localized_narratives.jsonl`` files.

Each line::

    {"dataset_id": "mscoco_val2017", "image_id": "137576", "annotator_id": 93,
     "caption": "In this image there are group of cows ...", "timed_caption": [...],
     "traces": [...], "voice_recording": "coco_val/coco_val_137576_93.ogg"}

``path`` is the JSONL file or a folder of them (with ``split``, only files whose name
contains it).  Images are ``<image_id>.jpg`` or, for COCO, ``<image_id:012d>.jpg``
(``.png`` also accepted), next to the file, in ``images/`` or in ``<split>/``;
``image_dir=`` overrides.  Lines are parsed by :mod:`cm3leon.core.formats.narratives`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.formats.narratives import image_names, parse_narrative
from cm3leon.tasks.readers.common import (
    FormatError,
    ReadContext,
    first_existing,
    iter_jsonl,
    load_image,
    pick_image_dir,
    reader,
)

__all__ = ["image_names", "read_localized_narratives"]


@reader
def read_localized_narratives(path: Path, *, split: str | None, ctx: ReadContext,
                              image_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One :class:`CaptionRecord` per narration: ``{"id": "<image_id>/<annotator_id>", "image", "caption"}``."""
    files = [path] if path.is_file() else sorted(path.glob("*.jsonl"))
    files = [f for f in files if path.is_file() or split is None or split in f.name]
    if not files:
        raise FormatError(f"{path}: no localized narratives .jsonl files" + (f" for {split!r}" if split else ""))
    for file in files:
        yield from _read_file(file, split, ctx, image_dir)


def _read_file(file: Path, split: str | None, ctx: ReadContext, image_dir: Any) -> Iterator[dict]:
    rows = list(iter_jsonl(file, ctx))
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here = file.parent
        probes = [image_names(str(o["image_id"])) for _, o in rows[:8] if "image_id" in o]
        candidates = [here, here / "images"] + ([here / split, here / "images" / split] if split else [])
        folder = pick_image_dir(candidates, probes, file)
    for lineno, obj in rows:
        where = f"{file}: line {lineno}"

        def make(o: dict = obj, w: str = where, n: int = lineno) -> dict:
            row = parse_narrative(o, w)
            image = load_image(first_existing(folder, image_names(row.image_id)), w)
            return {"id": f"{row.image_id}/{o.get('annotator_id', n)}", "image": image, "caption": row.caption.strip()}

        record = ctx.build(make)
        if record is not None:
            yield record
