"""Evaluation datasets in their public formats, with the image file of every item.

* **COCO captions** (``captions_<split>.json``: ``images`` + ``annotations``) with the
  image folder (default: ``<split>/`` next to the ``annotations/`` folder, or next to the
  file) -> :class:`CaptionItem` per image, references in file order.
* **VQA v2** questions (``v2_OpenEnded_mscoco_<subtype>_questions.json``) with the image
  folder (default: ``<subtype>/`` next to the file) and file pattern (default
  ``COCO_{subtype}_{image_id:012d}.jpg``) -> :class:`VQAItem` per question.
* **InstructPix2Pix** folders (``<split>/<sample>/prompt.json`` + ``<seed>_0.jpg`` input,
  ``<seed>_1.jpg`` edited) -> :class:`EditItem` per sample.
* The procedural world's ground truth (``ground_truth/scenes.jsonl``, ``edits.jsonl``).

Items are sorted by id (numerically when the ids are numbers) and ``limit`` keeps the
first ones, so a subset is the same on every run.  Errors name the file and the item.

The files are parsed by :mod:`cm3leon.core.formats` (``coco``, ``vqa``,
``instruct_pix2pix``, ``common.iter_jsonl``); this module finds the image files and
builds the items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cm3leon.core.formats import instruct_pix2pix as pix2pix_format
from cm3leon.core.formats import vqa as vqa_format
from cm3leon.core.formats.coco import CocoFile
from cm3leon.core.formats.common import FormatError, iter_jsonl

__all__ = [
    "CaptionItem",
    "EditItem",
    "VQAItem",
    "read_caption_dataset",
    "read_edit_samples",
    "read_vqa_questions",
    "read_world_edits",
    "read_world_scenes",
    "sibling_split_file",
]


@dataclass(frozen=True)
class CaptionItem:
    """One image of a captioning dataset."""

    image_id: str
    image: Path
    references: tuple[str, ...]


@dataclass(frozen=True)
class VQAItem:
    """One question of a VQA dataset."""

    question_id: str
    image_id: str
    question: str
    image: Path


@dataclass(frozen=True)
class EditItem:
    """One InstructPix2Pix sample: input image, instruction, edited image (if present)."""

    sample_id: str
    instruction: str
    image: Path
    target: Path | None


def _sort_key(value: str) -> tuple[int, Any]:
    return (0, int(value)) if value.isdigit() else (1, value)


def _limit(items: list[Any], limit: int | None, key: str) -> list[Any]:
    items = sorted(items, key=lambda it: _sort_key(getattr(it, key)))
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        items = items[:limit]
    return items


def _split_name(path: Path, pattern: str) -> str | None:
    match = re.search(pattern, path.name)
    return match.group(1) if match else None


def sibling_split_file(path: str | Path, old: str = "val", new: str = "train") -> Path | None:
    """``captions_val2017.json`` -> ``captions_train2017.json`` next to it, if it exists."""
    path = Path(path)
    if old not in path.name:
        return None
    other = path.with_name(path.name.replace(old, new, 1))
    return other if other.is_file() else None


def _image_folder(annotations: Path, images: str | Path | None) -> Path:
    if images is not None:
        folder = Path(images)
        if not folder.is_dir():
            raise FormatError(f"{folder}: image folder not found")
        return folder
    split = _split_name(annotations, r"^captions_(.+)\.json$")
    candidates = [annotations.parent.parent / split, annotations.parent / split] if split else []
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FormatError(
        f"{annotations}: cannot find its image folder (tried {[str(c) for c in candidates]}); "
        "give the folder explicitly (data.images)"
    )


def read_caption_dataset(
    annotations: str | Path, images: str | Path | None = None, *, limit: int | None = None
) -> list[CaptionItem]:
    """COCO captions file + image folder -> one :class:`CaptionItem` per captioned image.

    References are the captions as written, in file order.

    Raises:
        FormatError: not a COCO captions file, a malformed entry, a captioned image without
            a file, or no captions.
    """
    path = Path(annotations)
    coco = CocoFile.load(path, what="captions")
    folder = _image_folder(path, images)
    refs: dict[int, list[str]] = {}
    for cap in coco.captions():
        refs.setdefault(cap.image_id, []).append(cap.caption)
    items = []
    for image_id in coco.images:
        if image_id not in refs:
            continue
        file = folder / coco.file_name(image_id)
        if not file.is_file():
            raise FormatError(f"{path}: image {image_id}: file {file} not found")
        items.append(CaptionItem(str(image_id), file, tuple(refs[image_id])))
    if not items:
        raise FormatError(f"{path}: no captioned images")
    return _limit(items, limit, "image_id")


def read_vqa_questions(
    questions: str | Path,
    images: str | Path | None = None,
    *,
    pattern: str = "COCO_{subtype}_{image_id:012d}.jpg",
    limit: int | None = None,
) -> list[VQAItem]:
    """VQA questions file + image folder -> one :class:`VQAItem` per question.

    ``pattern`` is formatted with ``subtype`` (the file's ``data_subtype``, e.g.
    ``val2014``) and the integer ``image_id``.

    Raises:
        FormatError: malformed questions, or an image file that does not exist.
    """
    path = Path(questions)
    qfile = vqa_format.load_vqa_questions(path)
    if not qfile.entries:
        raise FormatError(f"{path}: expected {{'questions': [...]}} with at least one question")
    folder = Path(images) if images is not None else path.parent / qfile.subtype
    if not folder.is_dir():
        raise FormatError(f"{path}: image folder {folder} not found; give data.images")
    items = []
    for q in qfile.questions():
        try:
            name = pattern.format(subtype=qfile.subtype, image_id=q.image_id)
        except (KeyError, ValueError) as err:
            raise FormatError(f"{path}: question {q.question_id}: bad image pattern {pattern!r}: {err}") from None
        file = folder / name
        if not file.is_file():
            raise FormatError(f"{path}: question {q.question_id}: image {file} not found")
        items.append(VQAItem(str(q.question_id), str(q.image_id), q.question, file))
    return _limit(items, limit, "question_id")


def read_edit_samples(
    root: str | Path, split: str = "val", *, limit: int | None = None
) -> list[EditItem]:
    """InstructPix2Pix folders under ``root/split`` (or ``root`` itself) -> :class:`EditItem` s.

    Raises:
        FormatError: no samples, a malformed ``prompt.json``, or no ``*_0`` input image.
    """
    base = Path(root) / split if (Path(root) / split).is_dir() else Path(root)
    if not base.is_dir():
        raise FormatError(f"{root}: InstructPix2Pix folder not found")
    items = []
    for folder in sorted(p for p in base.iterdir() if (p / "prompt.json").is_file()):
        prompt = pix2pix_format.read_prompt(folder / "prompt.json")
        image = pix2pix_format.first_image(folder, "_0")
        if image is None:
            raise FormatError(f"{folder}: no input image (<seed>_0.jpg)")
        items.append(EditItem(folder.name, prompt.edit, image, pix2pix_format.first_image(folder, "_1")))
    if not items:
        raise FormatError(f"{base}: no InstructPix2Pix samples (<sample>/prompt.json)")
    return _limit(items, limit, "sample_id")


def read_world_scenes(path: str | Path, *, split: str | None = None) -> dict[str, dict[str, Any]]:
    """``ground_truth/scenes.jsonl`` -> ``{image_id: row}`` (rows of ``split`` only, if given)."""
    path = Path(path)
    out = {}
    for n, row in iter_jsonl(path):
        if "image_id" not in row or not isinstance(row.get("scene"), dict):
            raise FormatError(f"{path}:{n}: a scene line needs image_id and scene")
        if split is None or row.get("split") == split:
            out[str(row["image_id"])] = row
    if not out:
        raise FormatError(f"{path}: no scenes" + (f" in split {split!r}" if split else ""))
    return out


def read_world_entities(path: str | Path, *, split: str | None = None) -> list[dict[str, Any]]:
    """The world's ``entities/documents.jsonl`` -> its rows (of ``split`` only, if given),
    each with ``image`` resolved against the file's folder."""
    path = Path(path)
    out = []
    for n, row in iter_jsonl(path):
        missing = [k for k in ("id", "caption", "entity", "pattern", "image") if k not in row]
        if missing:
            raise FormatError(f"{path}:{n}: an entity document needs {missing}")
        if split is None or row.get("split") == split:
            out.append(row | {"image": path.parent / str(row["image"])})
    if not out:
        raise FormatError(f"{path}: no entity documents" + (f" in split {split!r}" if split else ""))
    return out


def read_world_edits(path: str | Path) -> dict[str, dict[str, Any]]:
    """``ground_truth/edits.jsonl`` -> ``{sample_id: edit dict}``."""
    path = Path(path)
    out = {}
    for n, row in iter_jsonl(path):
        if "sample_id" not in row or not isinstance(row.get("edit"), dict):
            raise FormatError(f"{path}:{n}: an edit line needs sample_id and edit")
        out[str(row["sample_id"])] = row["edit"]
    return out
