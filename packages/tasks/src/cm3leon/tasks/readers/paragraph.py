"""Image Paragraph reader (Krause et al., 2017): ``paragraphs_v1.json`` and split files.

Format::

    paragraphs_v1.json   [{"image_id": 2356347, "url": "https://.../VG_100K_2/2356347.jpg",
                           "paragraph": "A large building with a clock tower. ..."}, ...]
    train_split.json     [2356347, ...]      (also val_split.json, test_split.json)

``split`` keeps the ids of ``<split>_split.json`` (an error if that file is missing);
``None`` keeps all.  Images (Visual Genome) are the basename of ``url``, else
``<image_id>.jpg``, looked for next to the JSON, in ``images/``, ``VG_100K/`` and
``VG_100K_2/``; ``image_dir=`` overrides.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.tasks.readers.common import (
    FormatError,
    ReadContext,
    entry_field,
    find_annotation_file,
    first_existing,
    load_image,
    load_json,
    pick_image_dir,
    reader,
)

__all__ = ["read_image_paragraph"]


def _names(entry: Any) -> list[str]:
    names = []
    if isinstance(entry, dict):
        if isinstance(entry.get("url"), str) and entry["url"].strip():
            names.append(entry["url"].rstrip("/").rsplit("/", 1)[-1])
        if isinstance(entry.get("image_id"), (int, str)):
            names += [f"{entry['image_id']}.jpg", f"{entry['image_id']}.png"]
    return names or ["<no image name>"]


@reader
def read_image_paragraph(path: Path, *, split: str | None, ctx: ReadContext,
                         image_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One :class:`CaptionRecord` per paragraph: ``{"id": "<image_id>", "image", "caption"}``."""
    ann_file = find_annotation_file(path, ("paragraphs_v1.json", "paragraphs*.json"), None, "paragraphs")
    entries = load_json(ann_file, list)
    if split is not None:
        split_file = ann_file.parent / f"{split}_split.json"
        if not split_file.is_file():
            raise FormatError(f"{ann_file}: split {split!r} needs {split_file}")
        keep = {str(i) for i in load_json(split_file, list)}
        entries = [e for e in entries if not isinstance(e, dict) or str(e.get("image_id")) in keep]
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here = ann_file.parent
        probes = [_names(e) for e in entries[:8]]
        folder = pick_image_dir([here, here / "images", here / "VG_100K", here / "VG_100K_2"], probes, ann_file)
    for i, entry in enumerate(entries):
        where = f"{ann_file}: [{i}]"

        def make(e: Any = entry, w: str = where) -> dict:
            image_id = entry_field(e, "image_id", (int, str), w)
            paragraph = " ".join(entry_field(e, "paragraph", str, w).split())
            return {"id": str(image_id), "image": load_image(first_existing(folder, _names(e)), w),
                    "caption": paragraph}  # fmt: skip

        record = ctx.build(make)
        if record is not None:
            yield record
