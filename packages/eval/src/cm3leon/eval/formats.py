"""Readers for the public evaluation file formats and for image folders.

* COCO caption **results**: ``[{"image_id": 42, "caption": "..."}]`` (one per image).
* COCO caption **references**: an annotation file ``{"annotations": [{"image_id", "caption"}]}``,
  or ``{"<image_id>": ["ref 1", "ref 2", ...]}``, or ``[{"image_id", "captions": [...]}]``.
* VQA **results**: ``[{"question_id": 1, "answer": "..."}]``.
* VQA **annotations**: ``{"annotations": [{"question_id", "question_type", "answer_type",
  "answers": [{"answer", "answer_id", ...}, ...]}]}`` (or the bare list).
* Image **folders**: ``*.png``/``*.jpg``/``*.jpeg``/``*.webp``/``*.bmp``, sorted by path,
  recursively.
* **Document shards** (cm3leon MDS, a directory with ``manifest.json``): the pixels of every
  image segment, in order (hash-checked by :mod:`cm3leon.core.shards`).

Ids are compared as strings, so ``42`` in a results file matches ``"42"`` as a JSON key.
Every error names the file and the offending entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cm3leon.core.io import read_json

__all__ = [
    "IMAGE_SUFFIXES",
    "FormatError",
    "is_document_shards",
    "iter_image_batches",
    "iter_images",
    "list_images",
    "load_image_tensor",
    "read_caption_references",
    "read_caption_results",
    "read_vqa_annotations",
    "read_vqa_results",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class FormatError(ValueError):
    """A file does not follow the expected public format."""


def _entries(path: Path, data: Any, key: str) -> list[Any]:
    if isinstance(data, dict) and key in data:
        data = data[key]
    if not isinstance(data, list):
        raise FormatError(
            f"{path}: expected a list (or an object with {key!r}), got {type(data).__name__}"
        )
    return data


def _field(path: Path, entry: Any, index: int, name: str) -> Any:
    if not isinstance(entry, dict) or name not in entry:
        raise FormatError(f"{path}: entry {index} lacks {name!r}: {str(entry)[:200]}")
    return entry[name]


def read_caption_results(path: str | Path) -> dict[str, str]:
    """``image_id -> caption`` from a COCO results file; duplicate ids are an error."""
    path = Path(path)
    out: dict[str, str] = {}
    for i, entry in enumerate(_entries(path, read_json(path), "results")):
        image_id = str(_field(path, entry, i, "image_id"))
        caption = _field(path, entry, i, "caption")
        if not isinstance(caption, str):
            raise FormatError(f"{path}: entry {i} (image_id {image_id}): caption must be a string")
        if image_id in out:
            raise FormatError(f"{path}: image_id {image_id} has more than one caption (entry {i})")
        out[image_id] = caption
    if not out:
        raise FormatError(f"{path}: no captions")
    return out


def read_caption_references(path: str | Path) -> dict[str, list[str]]:
    """``image_id -> [reference captions]`` from any of the supported reference layouts."""
    path = Path(path)
    data = read_json(path)
    refs: dict[str, list[str]] = {}
    if isinstance(data, dict) and "annotations" not in data:
        for image_id, captions in data.items():
            if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
                raise FormatError(
                    f"{path}: references of image {image_id} must be a list of strings"
                )
            refs[str(image_id)] = list(captions)
    else:
        for i, entry in enumerate(_entries(path, data, "annotations")):
            image_id = str(_field(path, entry, i, "image_id"))
            if isinstance(entry, dict) and "captions" in entry:
                captions = entry["captions"]
            else:
                captions = [_field(path, entry, i, "caption")]
            if not all(isinstance(c, str) for c in captions):
                raise FormatError(
                    f"{path}: entry {i} (image_id {image_id}): captions must be strings"
                )
            refs.setdefault(image_id, []).extend(captions)
    empty = [k for k, v in refs.items() if not v]
    if not refs or empty:
        raise FormatError(f"{path}: every image needs at least one reference (empty: {empty[:10]})")
    return refs


def read_vqa_results(path: str | Path) -> dict[str, str]:
    """``question_id -> answer`` from a VQA results file; duplicate ids are an error."""
    path = Path(path)
    out: dict[str, str] = {}
    for i, entry in enumerate(_entries(path, read_json(path), "results")):
        qid = str(_field(path, entry, i, "question_id"))
        answer = _field(path, entry, i, "answer")
        if not isinstance(answer, str):
            raise FormatError(f"{path}: entry {i} (question_id {qid}): answer must be a string")
        if qid in out:
            raise FormatError(f"{path}: question_id {qid} is answered twice (entry {i})")
        out[qid] = answer
    return out


def read_vqa_annotations(path: str | Path) -> list[dict[str, Any]]:
    """Annotation records (official VQA layout) with their ``answers`` checked."""
    path = Path(path)
    records = _entries(path, read_json(path), "annotations")
    for i, entry in enumerate(records):
        qid = _field(path, entry, i, "question_id")
        answers = _field(path, entry, i, "answers")
        if not isinstance(answers, list) or not answers:
            raise FormatError(f"{path}: question {qid}: 'answers' must be a non-empty list")
        for a in answers:
            if not (
                isinstance(a, str) or (isinstance(a, dict) and isinstance(a.get("answer"), str))
            ):
                raise FormatError(
                    f"{path}: question {qid}: each answer must be a string or have 'answer'"
                )
    return records


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); an empty or missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError(f"{folder}: not a directory of images")
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise FormatError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def is_document_shards(path: str | Path) -> bool:
    """True for a cm3leon MDS dataset directory (it has ``manifest.json``)."""
    return (Path(path) / "manifest.json").is_file()


def _pil_to_tensor(image: Any) -> Any:
    import numpy as np
    import torch

    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def iter_images(source: str | Path) -> Iterator[Any]:
    """``(3, H, W)`` float tensors of an image folder or of document shards, in order.

    Raises:
        FormatError: an empty source, an unreadable image, or an image segment that holds
            only VQ codes (decode shards with the image tokenizer first).
    """
    source = Path(source)
    if not is_document_shards(source):
        for path in list_images(source):
            yield load_image_tensor(path)
        return
    from cm3leon.core.shards import iter_documents

    count = 0
    for doc in iter_documents(source):
        for j, seg in enumerate(doc.images):
            if seg.image is None:
                raise FormatError(
                    f"{source}: document {doc.id!r} image {j} holds only VQ codes; FID needs "
                    "pixels (decode the codes with the image tokenizer into a folder first)"
                )
            count += 1
            yield _pil_to_tensor(seg.pil())
    if count == 0:
        raise FormatError(f"{source}: the document shards hold no images")


def load_image_tensor(path: Path) -> Any:
    """An image file as a ``(3, H, W)`` float tensor in ``[0, 1]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return _pil_to_tensor(img)
    except (UnidentifiedImageError, OSError) as err:
        raise FormatError(f"{path}: cannot read image: {err}") from None


def iter_image_batches(images: Iterable[Any], batch_size: int) -> Iterator[Any]:
    """Yield ``(B, 3, H, W)`` batches of ``(3, H, W)`` tensors (or image file paths);
    consecutive images of one size share a batch."""
    import torch

    batch: list[Any] = []
    for item in images:
        img = load_image_tensor(item) if isinstance(item, (str, Path)) else item
        if batch and (len(batch) == batch_size or batch[0].shape != img.shape):
            yield torch.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield torch.stack(batch)
