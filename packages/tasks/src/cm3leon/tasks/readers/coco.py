"""MS-COCO readers: captions, instances, person keypoints, and cm3leon's depth layout.

Files (the public release layout; ``path`` may be the JSON file or the dataset root)::

    <root>/annotations/captions_<split>.json          {"images": [...], "annotations": [{"image_id", "id", "caption"}]}
    <root>/annotations/instances_<split>.json         + "categories"; annotations {"image_id", "category_id", "bbox", "segmentation", "iscrowd"}
    <root>/annotations/person_keypoints_<split>.json  annotations {"image_id", "keypoints", "num_keypoints"}; categories[].skeleton
    <root>/<split>/<file_name>                        the images (``images[].file_name``)

Images are looked for, in order, next to the JSON file, in ``images/``, in
``<split>/`` beside or above it, and in ``images/<split>/``; ``image_dir=`` overrides.

Depth has no public COCO format; cm3leon defines one (the procedural world exports
it): ``depth/<image file stem>.png``, a 16-bit single-channel PNG (larger = farther,
0 = unknown) in the folder of the captions file.  ``depth_dir=`` overrides.

Readers and the records they yield:

* :func:`read_coco_captions` -- one :class:`CaptionRecord` per caption (captioning).
* :func:`read_coco_images` -- one :class:`ConditionRecord` per image with its first
  caption (edge/hed/scribble-to-image: the condition is extracted from the pixels).
* :func:`read_coco_instances` -- one :class:`DetectionRecord` per image with its
  objects and first caption (object detection, seg-to-image).
* :func:`read_coco_keypoints` -- one :class:`ConditionRecord` per image with people.
* :func:`read_coco_depth` -- one :class:`ConditionRecord` per image with ``depth``.

The files are parsed by :mod:`cm3leon.core.formats.coco` (and ``.depth``); this module
finds the files and images and maps the rows to records.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.formats.coco import CocoCaption, CocoFile, coco_box
from cm3leon.core.formats.depth import read_depth_png
from cm3leon.tasks.readers.common import (
    FormatError,
    ReadContext,
    RecordError,
    find_annotation_file,
    load_image,
    pick_image_dir,
    reader,
)

__all__ = [
    "read_coco_captions",
    "read_coco_depth",
    "read_coco_images",
    "read_coco_instances",
    "read_coco_keypoints",
]


class CocoImages:
    """A parsed COCO annotation file (:class:`CocoFile`) with its image folder."""

    def __init__(self, ann_file: Path, ctx: ReadContext, split: str | None, image_dir: Any) -> None:
        self.coco = CocoFile.load(ann_file, ctx.reject, what=ann_file.stem.rsplit("_", 1)[0])
        self.images = self.coco.images
        split_name = split or ann_file.stem.rsplit("_", 1)[-1]
        if image_dir is not None:
            self.folder = Path(image_dir)
        else:
            here, up = ann_file.parent, ann_file.parent.parent
            candidates = [here, here / "images", here / split_name, up / split_name,
                          up / "images" / split_name, up / "images", up]  # fmt: skip
            probes = [[e["file_name"]] for e in list(self.images.values())[:8]
                      if isinstance(e.get("file_name"), str)]  # fmt: skip
            self.folder = pick_image_dir(candidates, probes, ann_file)

    def where(self, record_id: Any) -> str:
        return self.coco.where(record_id)

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one file object per reader call
    def image(self, image_id: int) -> Any:
        """Load the image of ``image_id`` (cached for consecutive records of one image)."""
        return load_image(self.folder / self.coco.file_name(image_id), self.where(image_id))


def _by_image(rows: list[Any]) -> dict[int, list[Any]]:
    groups: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        groups[row.image_id].append(row)
    return groups


def _captions(coco: CocoFile, ctx: ReadContext) -> dict[int, list[str]]:
    """Captions (stripped) by image id, ordered by annotation id."""
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for i, cap in enumerate(coco.captions(ctx.reject)):
        found[cap.image_id].append((cap.id if cap.id is not None else i, cap.caption.strip()))
    return {k: [c for _, c in sorted(v)] for k, v in found.items()}


def _ignore(err: Exception) -> None:
    """The images of a companion captions file are not used: their errors do not matter."""


def _companion_captions(ann_file: Path, prefix: str, captions: Any) -> Path:
    path = Path(captions) if captions is not None else ann_file.with_name(
        ann_file.name.replace(prefix, "captions_", 1))
    if not path.is_file():
        raise FormatError(
            f"{ann_file}: the task template needs a caption per image, but the captions file "
            f"{path} does not exist; pass captions=PATH"
        )
    return path


@reader
def read_coco_captions(path: Path, *, split: str | None, ctx: ReadContext,
                       image_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One record per caption: ``{"id": "<image_id>/<ann_id>", "image", "caption", "captions"}``."""
    coco = CocoImages(find_annotation_file(path, ("captions_*.json",), split, "COCO captions"),
                      ctx, split, image_dir)  # fmt: skip
    for image_id, caps in _by_image(coco.coco.captions(ctx.reject)).items():
        refs = [c.caption.strip() for c in caps]
        for k, cap in enumerate(caps):
            rid = f"{image_id}/{cap.id if cap.id is not None else k}"

            def make(c: CocoCaption = cap, r: str = rid, i: int = image_id, refs: list = refs) -> dict:
                return {"id": r, "image": coco.image(i), "caption": c.caption.strip(), "captions": refs}

            record = ctx.build(make)
            if record is not None:
                yield record


def _per_image(coco: CocoImages, caps: dict[int, list[str]], ctx: ReadContext) -> Iterator[tuple[int, list[str]]]:
    for image_id in coco.images:
        if not caps.get(image_id):
            ctx.filtered("no_caption")
            continue
        yield image_id, caps[image_id]


@reader
def read_coco_images(path: Path, *, split: str | None, ctx: ReadContext,
                     image_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One record per captioned image: ``{"id", "image", "caption", "captions"}``."""
    ann_file = find_annotation_file(path, ("captions_*.json",), split, "COCO captions")
    coco = CocoImages(ann_file, ctx, split, image_dir)
    for image_id, caps in _per_image(coco, _captions(coco.coco, ctx), ctx):
        record = ctx.build(lambda i=image_id, c=caps: {
            "id": str(i), "image": coco.image(i), "caption": c[0], "captions": c})  # fmt: skip
        if record is not None:
            yield record


def _companion(ann_file: Path, prefix: str, captions: Any, ctx: ReadContext) -> dict[int, list[str]]:
    return _captions(CocoFile.load(_companion_captions(ann_file, prefix, captions), _ignore, what="captions"), ctx)


@reader
def read_coco_instances(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None,
                        captions: Any = None, include_crowd: bool = False) -> Iterator[dict]:  # fmt: skip
    """One record per image with objects: ``{"id", "image", "caption", "objects"}``.

    ``objects`` holds ``{"label", "box", "category_id", "segmentation"}`` per instance
    (crowd regions are left out unless ``include_crowd``).  Captions come from the
    ``captions_<split>.json`` next to the instances file, or ``captions=PATH``.
    """
    ann_file = find_annotation_file(path, ("instances_*.json",), split, "COCO instances")
    coco = CocoImages(ann_file, ctx, split, image_dir)
    names = coco.coco.category_names()
    caps = _companion(ann_file, "instances_", captions, ctx)
    groups = _by_image(coco.coco.instances(ctx.reject))
    for image_id, cap_list in _per_image(coco, caps, ctx):
        anns = [a for a in groups.get(image_id, []) if include_crowd or not a.iscrowd]
        if not anns:
            ctx.filtered("no_objects")
            continue

        def make(i: int = image_id, anns: list = anns, c: list = cap_list) -> dict:
            objects = []
            for ann in anns:
                where = coco.where(f"{i} annotation {ann.id}")
                if ann.category_id not in names:
                    raise RecordError(f"{where}: unknown category_id {ann.category_id}",
                                      reason="unknown_category")  # fmt: skip
                objects.append({"label": names[ann.category_id], "box": coco_box(ann.bbox, where),
                                "category_id": ann.category_id, "segmentation": ann.segmentation})  # fmt: skip
            return {"id": str(i), "image": coco.image(i), "caption": c[0], "captions": c, "objects": objects}

        record = ctx.build(make)
        if record is not None:
            yield record


@reader
def read_coco_keypoints(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None,
                        captions: Any = None) -> Iterator[dict]:  # fmt: skip
    """One record per image with annotated people: ``{"id", "image", "caption", "keypoints", "skeleton"}``."""
    ann_file = find_annotation_file(path, ("person_keypoints_*.json",), split, "COCO keypoints")
    coco = CocoImages(ann_file, ctx, split, image_dir)
    skeleton = coco.coco.skeleton()
    caps = _companion(ann_file, "person_keypoints_", captions, ctx)
    groups = _by_image(coco.coco.people(ctx.reject))
    for image_id, cap_list in _per_image(coco, caps, ctx):
        people = [p.keypoints for p in groups.get(image_id, []) if any(p.keypoints[2::3])]
        if not people:
            ctx.filtered("no_keypoints")
            continue

        def make(i: int = image_id, people: list = people, c: list = cap_list) -> dict:
            for person in people:
                if len(person) % 3 or not all(isinstance(v, (int, float)) for v in person):
                    raise RecordError(f"{coco.where(i)}: keypoints must be (x, y, v) number triples",
                                      reason="wrong_type")  # fmt: skip
            record = {"id": str(i), "image": coco.image(i), "caption": c[0], "keypoints": people}
            if skeleton:
                record["skeleton"] = skeleton
            return record

        record = ctx.build(make)
        if record is not None:
            yield record


@reader
def read_coco_depth(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None,
                    depth_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One record per captioned image with its depth map: ``{"id", "image", "caption", "depth"}``."""
    ann_file = find_annotation_file(path, ("captions_*.json",), split, "COCO captions")
    coco = CocoImages(ann_file, ctx, split, image_dir)
    folder = Path(depth_dir) if depth_dir is not None else ann_file.parent / "depth"
    if not folder.is_dir():
        raise FormatError(f"{ann_file}: depth folder {folder} does not exist; pass depth_dir=PATH")
    for image_id, caps in _per_image(coco, _captions(coco.coco, ctx), ctx):

        def make(i: int = image_id, c: list = caps) -> dict:
            image = coco.image(i)
            stem = Path(coco.images[i]["file_name"]).stem
            depth = read_depth_png(folder / f"{stem}.png", image.size, coco.where(i))
            return {"id": str(i), "image": image, "caption": c[0], "captions": c, "depth": depth}

        record = ctx.build(make)
        if record is not None:
            yield record
