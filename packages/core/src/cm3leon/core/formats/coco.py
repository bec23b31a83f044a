"""MS-COCO 2017: captions, instances, person keypoints, and caption results -- read and written.

Files (the public release layout)::

    annotations/captions_<split>.json          {"info", "licenses", "images": [...],
                                                "annotations": [{"id", "image_id", "caption"}]}
    annotations/instances_<split>.json         + "categories"; annotations {"id", "image_id",
                                                "category_id", "bbox", "segmentation", "iscrowd", ...}
    annotations/person_keypoints_<split>.json  annotations {"id", "image_id", "keypoints",
                                                "num_keypoints", ...}; categories[].skeleton
    <split>/<file_name>                        the images (``images[].file_name``)

Caption results (what a captioning model submits) and references (what it is scored against)::

    [{"image_id": 42, "caption": "..."}]       one per image
    a captions file, {"<image_id>": ["ref", ...]} or [{"image_id", "captions": [...]}]

Reading: :meth:`CocoFile.load` checks the top level and indexes ``images`` by id;
:meth:`CocoFile.captions`, :meth:`CocoFile.instances` and :meth:`CocoFile.people` parse
the annotations into rows (file order).  Entries are validated lazily so a lenient
reader (``on_error``) can skip just the bad ones.  Writing: :func:`write_coco_file` and
:func:`write_coco_split` lay out the three annotation files of a split.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.formats.common import (
    EntryError,
    FormatError,
    OnError,
    checked,
    entry_field,
    entry_key,
    entry_list,
    load_json,
    write_json,
)
from cm3leon.core.io import read_json

__all__ = [
    "CocoCaption",
    "CocoFile",
    "CocoInstance",
    "CocoPerson",
    "coco_box",
    "read_caption_references",
    "read_caption_results",
    "write_caption_results",
    "write_coco_file",
    "write_coco_split",
]


@dataclass(frozen=True)
class CocoCaption:
    """One caption annotation (``id`` is None when the entry has no int ``id``)."""

    id: int | None
    image_id: int
    caption: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "image_id": self.image_id, "caption": self.caption}


@dataclass(frozen=True)
class CocoInstance:
    """One object annotation: ``bbox`` as in the file (``[x, y, w, h]``), polygons or RLE."""

    id: Any
    image_id: int
    category_id: int
    bbox: list[Any]
    segmentation: Any
    iscrowd: bool


@dataclass(frozen=True)
class CocoPerson:
    """One person annotation: ``keypoints`` is the flat ``[x, y, v] * K`` list."""

    id: Any
    image_id: int
    keypoints: list[Any]


class CocoFile:
    """One COCO annotation file: the parsed JSON and its ``images`` by id."""

    def __init__(self, path: Path, data: dict[str, Any], images: dict[int, Mapping[str, Any]]) -> None:
        self.path = path
        self.data = data
        self.images = images

    @classmethod
    def load(cls, path: Path, on_error: OnError | None = None, *, what: str = "annotation") -> CocoFile:
        """Parse ``path``; an image entry without an int ``id`` is an :class:`EntryError`.

        ``what`` (``captions``, ``instances``, ...) names the expected file in errors.

        Raises:
            FormatError: not JSON, or no top-level ``images`` / ``annotations`` list.
        """
        data = load_json(path)
        for key in ("images", "annotations"):
            if not isinstance(data.get(key), list):
                raise FormatError(f"{path}: needs a top-level {key!r} list "
                                  f"(expected a COCO {what} file with 'images' and 'annotations')")  # fmt: skip
        images: dict[int, Mapping[str, Any]] = {}
        for i, entry in enumerate(data["images"]):
            image_id = checked(lambda e=entry, w=f"{path}: images[{i}]": entry_field(e, "id", int, w), on_error)
            if image_id is not None:
                images[image_id] = entry
        return cls(path, data, images)

    def where(self, record_id: Any) -> str:
        """How errors name the entries of image (or record) ``record_id``."""
        return f"{self.path}: record {record_id}"

    def file_name(self, image_id: int) -> str:
        """``images[].file_name`` of ``image_id``.

        Raises:
            EntryError: ``image_id`` is not in ``images``, or its entry has no file name.
        """
        entry = self.images.get(image_id)
        if entry is None:
            raise EntryError(f"{self.where(image_id)}: image_id {image_id} is not in 'images'",
                             reason="unknown_image")  # fmt: skip
        return entry_field(entry, "file_name", str, f"{self.path}: images id {image_id}")

    def annotations(
        self, fields: Mapping[str, type | tuple[type, ...]], on_error: OnError | None = None
    ) -> Iterator[dict[str, Any]]:
        """The annotation entries (file order) with an int ``image_id`` and ``fields`` checked."""
        for i, ann in enumerate(self.data["annotations"]):

            def check(a: Any = ann, w: str = f"{self.path}: annotations[{i}]") -> dict[str, Any]:
                entry_field(a, "image_id", int, w)
                for key, kind in fields.items():
                    entry_field(a, key, kind, w)
                return a

            if checked(check, on_error) is not None:
                yield ann

    def captions(self, on_error: OnError | None = None) -> list[CocoCaption]:
        """Caption annotations in file order (captions as written, not stripped)."""
        return [CocoCaption(a["id"] if _is_int(a.get("id")) else None, a["image_id"], a["caption"])
                for a in self.annotations({"caption": str}, on_error)]  # fmt: skip

    def instances(self, on_error: OnError | None = None) -> list[CocoInstance]:
        """Object annotations in file order (``bbox`` checked to be a list, see :func:`coco_box`)."""
        return [CocoInstance(a.get("id", "?"), a["image_id"], a["category_id"], a["bbox"],
                             a.get("segmentation"), bool(a.get("iscrowd")))
                for a in self.annotations({"category_id": int, "bbox": list}, on_error)]  # fmt: skip

    def people(self, on_error: OnError | None = None) -> list[CocoPerson]:
        """Person keypoint annotations in file order."""
        return [CocoPerson(a.get("id", "?"), a["image_id"], a["keypoints"])
                for a in self.annotations({"keypoints": list}, on_error)]  # fmt: skip

    def category_names(self) -> dict[int, str]:
        """``category id -> name``.

        Raises:
            FormatError: no ``categories`` list, or a category without int id and str name.
        """
        cats = self.data.get("categories")
        if not isinstance(cats, list):
            raise FormatError(f"{self.path}: needs a top-level 'categories' list")
        names = {}
        for i, cat in enumerate(cats):
            if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
                raise FormatError(f"{self.path}: categories[{i}] needs an int 'id' and a str 'name'")
            names[cat["id"]] = cat["name"]
        return names

    def skeleton(self) -> list[list[int]] | None:
        """The first category ``skeleton`` (1-based keypoint pairs), if any."""
        cats = self.data.get("categories")
        return next((c.get("skeleton") for c in cats or [] if isinstance(c, dict) and c.get("skeleton")), None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def coco_box(bbox: Sequence[Any], where: str) -> list[float]:
    """``[x, y, w, h]`` as floats; anything but 4 finite numbers is an :class:`EntryError`."""
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        raise EntryError(f"{where}: 'bbox' must be 4 finite numbers, got {bbox!r}", reason="wrong_type")
    return [float(v) for v in bbox]


def write_coco_file(
    path: Path,
    *,
    images: Sequence[Mapping[str, Any]],
    annotations: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any],
    licenses: Sequence[Mapping[str, Any]],
    categories: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """One COCO annotation file (``categories`` only for instances and keypoints)."""
    data: dict[str, Any] = {"info": info, "licenses": licenses, "images": images, "annotations": annotations}
    if categories is not None:
        data["categories"] = categories
    write_json(path, data)


def write_coco_split(
    root: Path,
    split: str,
    *,
    images: Sequence[Mapping[str, Any]],
    captions: Sequence[CocoCaption],
    instances: Sequence[Mapping[str, Any]],
    keypoints: Sequence[Mapping[str, Any]],
    categories: Sequence[Mapping[str, Any]],
    keypoint_categories: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any],
    licenses: Sequence[Mapping[str, Any]],
) -> None:
    """``root/annotations/{captions,instances,person_keypoints}_<split>.json``."""
    ann = root / "annotations"
    common: dict[str, Any] = {"images": images, "info": info, "licenses": licenses}
    write_coco_file(ann / f"captions_{split}.json", annotations=[c.to_dict() for c in captions], **common)
    write_coco_file(ann / f"instances_{split}.json", annotations=instances, categories=categories, **common)
    write_coco_file(ann / f"person_keypoints_{split}.json", annotations=keypoints,
                    categories=keypoint_categories, **common)  # fmt: skip


# ----------------------------------------------------------------- results
def read_caption_results(path: str | Path) -> dict[str, str]:
    """``image_id -> caption`` from a COCO results file; ids as strings, duplicates an error.

    Raises:
        FileNotFoundError: no such file (as every eval input; ``cm3leon.core.io.read_json``).
        FormatError: not a list of ``{"image_id", "caption"}``, a duplicate id, or no captions.
    """
    path = Path(path)
    out: dict[str, str] = {}
    for i, entry in enumerate(entry_list(path, read_json(path), "results")):
        image_id = str(entry_key(path, entry, i, "image_id"))
        caption = entry_key(path, entry, i, "caption")
        if not isinstance(caption, str):
            raise EntryError(f"{path}: entry {i} (image_id {image_id}): caption must be a string",
                             reason="wrong_type")  # fmt: skip
        if image_id in out:
            raise EntryError(f"{path}: image_id {image_id} has more than one caption (entry {i})",
                             reason="duplicate")  # fmt: skip
        out[image_id] = caption
    if not out:
        raise FormatError(f"{path}: no captions")
    return out


def read_caption_references(path: str | Path) -> dict[str, list[str]]:
    """``image_id -> [reference captions]`` (ids as strings) from any reference layout.

    Accepted: a COCO captions file (``{"annotations": [{"image_id", "caption"}]}``),
    ``{"<image_id>": ["ref 1", ...]}``, or ``[{"image_id", "captions": [...]}]``.

    Raises:
        FileNotFoundError: no such file.
        FormatError: an entry without ``image_id`` or captions, or an image with no reference.
    """
    path = Path(path)
    data = read_json(path)
    refs: dict[str, list[str]] = {}
    if isinstance(data, dict) and "annotations" not in data:
        for image_id, captions in data.items():
            if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
                raise EntryError(f"{path}: references of image {image_id} must be a list of strings",
                                 reason="wrong_type")  # fmt: skip
            refs[str(image_id)] = list(captions)
    else:
        for i, entry in enumerate(entry_list(path, data, "annotations")):
            image_id = str(entry_key(path, entry, i, "image_id"))
            captions = entry["captions"] if "captions" in entry else [entry_key(path, entry, i, "caption")]
            if not all(isinstance(c, str) for c in captions):
                raise EntryError(f"{path}: entry {i} (image_id {image_id}): captions must be strings",
                                 reason="wrong_type")  # fmt: skip
            refs.setdefault(image_id, []).extend(captions)
    empty = [k for k, v in refs.items() if not v]
    if not refs or empty:
        raise FormatError(f"{path}: every image needs at least one reference (empty: {empty[:10]})")
    return refs


def write_caption_results(path: Path, captions: Mapping[str, str]) -> None:
    """``[{"image_id", "caption"}]`` (numeric ids written as numbers, in the given order)."""
    write_json(path, [{"image_id": int(i) if i.isdigit() else i, "caption": c} for i, c in captions.items()])
