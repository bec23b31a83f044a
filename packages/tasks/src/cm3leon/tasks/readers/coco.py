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
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cm3leon.tasks.readers.common import (
    FormatError,
    ReadContext,
    RecordError,
    entry_field,
    find_annotation_file,
    load_image,
    load_json,
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


class CocoFile:
    """One COCO annotation file with its image index and image folder."""

    def __init__(self, ann_file: Path, ctx: ReadContext, split: str | None, image_dir: Any) -> None:
        self.file = ann_file
        self.data = load_json(ann_file)
        for key in ("images", "annotations"):
            if not isinstance(self.data.get(key), list):
                raise FormatError(f"{ann_file}: needs a top-level {key!r} list")
        self.images: dict[int, dict[str, Any]] = {}
        for i, entry in enumerate(self.data["images"]):
            where = f"{ann_file}: images[{i}]"
            image_id = ctx.attempt(lambda e=entry, w=where: entry_field(e, "id", int, w))
            if image_id is not None:
                self.images[image_id] = entry
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
        return f"{self.file}: record {record_id}"

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one file object per reader call
    def image(self, image_id: int) -> Any:
        """Load the image of ``image_id`` (cached for consecutive records of one image)."""
        entry = self.images.get(image_id)
        if entry is None:
            raise RecordError(f"{self.where(image_id)}: image_id {image_id} is not in 'images'",
                              reason="unknown_image")  # fmt: skip
        name = entry_field(entry, "file_name", str, f"{self.file}: images id {image_id}")
        return load_image(self.folder / name, self.where(image_id))

    def grouped(self, ctx: ReadContext, fields: dict[str, type | tuple[type, ...]]) -> dict[int, list[dict]]:
        """Annotations by image id (file order), each checked for ``fields``."""
        groups: dict[int, list[dict]] = defaultdict(list)
        for i, ann in enumerate(self.data["annotations"]):
            where = f"{self.file}: annotations[{i}]"

            def check(a: Any = ann, w: str = where) -> dict:
                entry_field(a, "image_id", int, w)
                for key, kind in fields.items():
                    entry_field(a, key, kind, w)
                return a

            if ctx.attempt(check) is not None:
                groups[ann["image_id"]].append(ann)
        return groups


def _captions(ann_file: Path, ctx: ReadContext) -> dict[int, list[str]]:
    """Captions by image id from a captions file, ordered by annotation id."""
    data = load_json(ann_file)
    if not isinstance(data.get("annotations"), list):
        raise FormatError(f"{ann_file}: needs a top-level 'annotations' list")
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for i, ann in enumerate(data["annotations"]):
        where = f"{ann_file}: annotations[{i}]"

        def check(a: Any = ann, w: str = where) -> tuple[int, str]:
            return entry_field(a, "image_id", int, w), entry_field(a, "caption", str, w).strip()

        got = ctx.attempt(check)
        if got is not None:
            found[got[0]].append((int(ann.get("id", i)) if isinstance(ann.get("id"), int) else i, got[1]))
    return {k: [c for _, c in sorted(v)] for k, v in found.items()}


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
    coco = CocoFile(find_annotation_file(path, ("captions_*.json",), split, "COCO captions"),
                    ctx, split, image_dir)  # fmt: skip
    groups = coco.grouped(ctx, {"caption": str})
    for image_id, anns in groups.items():
        refs = [a["caption"].strip() for a in anns]
        for k, ann in enumerate(anns):
            rid = f"{image_id}/{ann.get('id', k)}"

            def make(a: dict = ann, r: str = rid, i: int = image_id, refs: list = refs) -> dict:
                return {"id": r, "image": coco.image(i), "caption": a["caption"].strip(), "captions": refs}

            record = ctx.build(make)
            if record is not None:
                yield record


def _per_image(coco: CocoFile, caps: dict[int, list[str]], ctx: ReadContext) -> Iterator[tuple[int, list[str]]]:
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
    coco = CocoFile(ann_file, ctx, split, image_dir)
    for image_id, caps in _per_image(coco, _captions(ann_file, ctx), ctx):
        record = ctx.build(lambda i=image_id, c=caps: {
            "id": str(i), "image": coco.image(i), "caption": c[0], "captions": c})  # fmt: skip
        if record is not None:
            yield record


def _box(ann: dict, where: str) -> list[float]:
    box = entry_field(ann, "bbox", list, where)
    if len(box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
        raise RecordError(f"{where}: 'bbox' must be 4 finite numbers, got {box!r}", reason="wrong_type")
    return [float(v) for v in box]


@reader
def read_coco_instances(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None,
                        captions: Any = None, include_crowd: bool = False) -> Iterator[dict]:  # fmt: skip
    """One record per image with objects: ``{"id", "image", "caption", "objects"}``.

    ``objects`` holds ``{"label", "box", "category_id", "segmentation"}`` per instance
    (crowd regions are left out unless ``include_crowd``).  Captions come from the
    ``captions_<split>.json`` next to the instances file, or ``captions=PATH``.
    """
    ann_file = find_annotation_file(path, ("instances_*.json",), split, "COCO instances")
    coco = CocoFile(ann_file, ctx, split, image_dir)
    names = _categories(coco)
    caps = _captions(_companion_captions(ann_file, "instances_", captions), ctx)
    groups = coco.grouped(ctx, {"category_id": int, "bbox": list})
    for image_id, cap_list in _per_image(coco, caps, ctx):
        anns = [a for a in groups.get(image_id, []) if include_crowd or not a.get("iscrowd")]
        if not anns:
            ctx.filtered("no_objects")
            continue

        def make(i: int = image_id, anns: list = anns, c: list = cap_list) -> dict:
            objects = []
            for ann in anns:
                where = coco.where(f"{i} annotation {ann.get('id', '?')}")
                if ann["category_id"] not in names:
                    raise RecordError(f"{where}: unknown category_id {ann['category_id']}",
                                      reason="unknown_category")  # fmt: skip
                objects.append({"label": names[ann["category_id"]], "box": _box(ann, where),
                                "category_id": ann["category_id"],
                                "segmentation": ann.get("segmentation")})  # fmt: skip
            return {"id": str(i), "image": coco.image(i), "caption": c[0], "captions": c, "objects": objects}

        record = ctx.build(make)
        if record is not None:
            yield record


def _categories(coco: CocoFile) -> dict[int, str]:
    cats = coco.data.get("categories")
    if not isinstance(cats, list):
        raise FormatError(f"{coco.file}: needs a top-level 'categories' list")
    names = {}
    for i, cat in enumerate(cats):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise FormatError(f"{coco.file}: categories[{i}] needs an int 'id' and a str 'name'")
        names[cat["id"]] = cat["name"]
    return names


@reader
def read_coco_keypoints(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None,
                        captions: Any = None) -> Iterator[dict]:  # fmt: skip
    """One record per image with annotated people: ``{"id", "image", "caption", "keypoints", "skeleton"}``."""
    ann_file = find_annotation_file(path, ("person_keypoints_*.json",), split, "COCO keypoints")
    coco = CocoFile(ann_file, ctx, split, image_dir)
    cats = coco.data.get("categories")
    skeleton = next((c.get("skeleton") for c in cats or [] if isinstance(c, dict) and c.get("skeleton")), None)
    caps = _captions(_companion_captions(ann_file, "person_keypoints_", captions), ctx)
    groups = coco.grouped(ctx, {"keypoints": list})
    for image_id, cap_list in _per_image(coco, caps, ctx):
        people = [a["keypoints"] for a in groups.get(image_id, []) if any(a["keypoints"][2::3])]
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


def load_depth(path: Path, size: tuple[int, int], where: str) -> np.ndarray:
    """A single-channel (16-bit) depth PNG as float32 ``(H, W)``; errors name the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except FileNotFoundError:
        raise RecordError(f"{where}: depth file {path} not found", reason="missing_depth") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise RecordError(f"{where}: depth file {path} is corrupt: {err}", reason="corrupt_depth") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise RecordError(f"{where}: depth file {path} must be a single-channel integer PNG, "
                          f"got {arr.dtype} {arr.shape}", reason="corrupt_depth")  # fmt: skip
    if arr.shape[::-1] != tuple(size):
        raise RecordError(f"{where}: depth {path} is {arr.shape[1]}x{arr.shape[0]}, image is "
                          f"{size[0]}x{size[1]}", reason="corrupt_depth")  # fmt: skip
    return arr.astype(np.float32)


@reader
def read_coco_depth(path: Path, *, split: str | None, ctx: ReadContext, image_dir: Any = None,
                    depth_dir: Any = None) -> Iterator[dict]:  # fmt: skip
    """One record per captioned image with its depth map: ``{"id", "image", "caption", "depth"}``."""
    ann_file = find_annotation_file(path, ("captions_*.json",), split, "COCO captions")
    coco = CocoFile(ann_file, ctx, split, image_dir)
    folder = Path(depth_dir) if depth_dir is not None else ann_file.parent / "depth"
    if not folder.is_dir():
        raise FormatError(f"{ann_file}: depth folder {folder} does not exist; pass depth_dir=PATH")
    for image_id, caps in _per_image(coco, _captions(ann_file, ctx), ctx):

        def make(i: int = image_id, c: list = caps) -> dict:
            image = coco.image(i)
            stem = Path(coco.images[i]["file_name"]).stem
            depth = load_depth(folder / f"{stem}.png", image.size, coco.where(i))
            return {"id": str(i), "image": image, "caption": c[0], "captions": c, "depth": depth}

        record = ctx.build(make)
        if record is not None:
            yield record
