"""Flickr30k reader: Karpathy's ``dataset_flickr30k.json``.

Format::

    {"dataset": "flickr30k",
     "images": [{"filename": "1000092795.jpg", "imgid": 0, "split": "train",
                 "sentences": [{"raw": "Two young guys ...", "tokens": [...], "sentid": 0}, ...]}]}

Images are looked for next to the JSON file, in ``flickr30k-images/`` and in
``images/``; ``image_dir=`` overrides.  ``split`` (``train``/``val``/``test``) keeps
the images of that Karpathy split; ``None`` keeps all.  The file is parsed by
:mod:`cm3leon.core.formats.flickr30k`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.formats.flickr30k import load_karpathy, parse_karpathy_image
from cm3leon.tasks.readers.common import (
    ReadContext,
    find_annotation_file,
    load_image,
    pick_image_dir,
    reader,
)

__all__ = ["read_flickr30k"]


@reader
def read_flickr30k(path: Path, *, split: str | None, ctx: ReadContext,
                   image_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One :class:`CaptionRecord` per sentence: ``{"id": "<filename>/<k>", "image", "caption", "captions"}``."""
    ann_file = find_annotation_file(path, ("dataset_flickr30k.json", "dataset_*.json"), None, "Karpathy")
    entries = [e for e in load_karpathy(ann_file) if split is None or not isinstance(e, dict) or e.get("split") == split]
    if image_dir is not None:
        folder = Path(image_dir)
    else:
        here = ann_file.parent
        probes = [[e["filename"]] for e in entries[:8] if isinstance(e, dict) and isinstance(e.get("filename"), str)]
        folder = pick_image_dir([here, here / "flickr30k-images", here / "images", here.parent / "flickr30k-images"],
                                probes, ann_file)  # fmt: skip
    load = functools.lru_cache(maxsize=1)(lambda name, where: load_image(folder / name, where))
    for i, entry in enumerate(entries):
        where = f"{ann_file}: images[{i}]"
        row = ctx.attempt(lambda e=entry, w=where: parse_karpathy_image(e, w))
        if row is None:
            continue
        name, sentences = row.filename, [s.strip() for s in row.sentences]
        for k, text in enumerate(sentences):
            record = ctx.build(lambda k=k, t=text, n=name, w=where, s=sentences: {
                "id": f"{n}/{k}", "image": load(n, w), "caption": t, "captions": s})  # fmt: skip
            if record is not None:
                yield record
