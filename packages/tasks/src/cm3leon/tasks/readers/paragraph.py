"""Image Paragraph reader (Krause et al., 2017): ``paragraphs_v1.json`` and split files.

Format::

    paragraphs_v1.json   [{"image_id": 2356347, "url": "https://.../VG_100K_2/2356347.jpg",
                           "paragraph": "A large building with a clock tower. ..."}, ...]
    train_split.json     [2356347, ...]      (also val_split.json, test_split.json)

``split`` keeps the ids of ``<split>_split.json`` (an error if that file is missing);
``None`` keeps all.  Images (Visual Genome) are the basename of ``url``, else
``<image_id>.jpg``, looked for next to the JSON, in ``images/``, ``VG_100K/`` and
``VG_100K_2/``; ``image_dir=`` overrides.  The files are parsed by
:mod:`cm3leon.core.formats.paragraph`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.formats import paragraph as paragraph_format
from cm3leon.tasks.readers.common import (
    ReadContext,
    find_annotation_file,
    first_existing,
    load_image,
    pick_image_dir,
    reader,
)

__all__ = ["read_image_paragraph"]


@reader
def read_image_paragraph(path: Path, *, split: str | None, ctx: ReadContext,
                         image_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One :class:`CaptionRecord` per paragraph: ``{"id": "<image_id>", "image", "caption"}``."""
    ann_file = find_annotation_file(path, ("paragraphs_v1.json", "paragraphs*.json"), None, "paragraphs")
    entries = paragraph_format.load_paragraphs(ann_file)
    if split is not None:
        keep = paragraph_format.load_split_ids(ann_file, split)
        entries = [e for e in entries if not isinstance(e, dict) or str(e.get("image_id")) in keep]
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here = ann_file.parent
        probes = [paragraph_format.image_names(e) for e in entries[:8]]
        folder = pick_image_dir([here, here / "images", here / "VG_100K", here / "VG_100K_2"], probes, ann_file)
    for i, entry in enumerate(entries):
        where = f"{ann_file}: [{i}]"

        def make(e: Any = entry, w: str = where) -> dict:
            row = paragraph_format.parse_paragraph(e, w)
            image = load_image(first_existing(folder, paragraph_format.image_names(e)), w)
            return {"id": str(row.image_id), "image": image, "caption": " ".join(row.paragraph.split())}

        record = ctx.build(make)
        if record is not None:
            yield record
