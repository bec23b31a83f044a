"""Eval's inputs: the public result formats (from :mod:`cm3leon.core.formats`) and image sources.

The public formats are parsed in :mod:`cm3leon.core.formats` and re-exported here under
the names the eval modules use:

* COCO caption **results** and **references** (:mod:`cm3leon.core.formats.coco`);
* VQA **results** and **annotations** (:mod:`cm3leon.core.formats.vqa`);
* :class:`FormatError`, the one error for a file that does not follow its format.

This module owns the image sources that FID and CLIP score read:

* Image **folders**: ``*.png``/``*.jpg``/``*.jpeg``/``*.webp``/``*.bmp``, sorted by path,
  recursively.
* **Document shards** (cm3leon MDS, a directory with ``manifest.json``): the pixels of every
  image segment, in order (hash-checked by :mod:`cm3leon.core.shards`).

Ids are compared as strings, so ``42`` in a results file matches ``"42"`` as a JSON key.
Every error names the file and the offending entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cm3leon.core.formats.coco import read_caption_references, read_caption_results
from cm3leon.core.formats.common import FormatError
from cm3leon.core.formats.vqa import read_vqa_annotations, read_vqa_results

__all__ = [
    "IMAGE_SUFFIXES",
    "FormatError",
    "is_document_shards",
    "iter_image_batches",
    "iter_images",
    "list_images",
    "load_image_tensor",
    "match_ids",
    "read_caption_references",
    "read_caption_results",
    "read_vqa_annotations",
    "read_vqa_results",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def match_ids(
    preds: Mapping[str, Any], truth: Mapping[str, Any], what: str, partial: bool
) -> list[str]:
    """The ids of ``truth`` that have a prediction, in ``truth``'s order.

    The one check that a results file answers its references (captioning, VQA): ids are
    compared as given (callers turn them into strings first).

    Raises:
        FormatError: a prediction without truth, or (unless ``partial``) truth without one;
            the message names up to ten ids.
    """
    unknown = sorted(set(preds) - set(truth))
    if unknown:
        raise FormatError(f"{len(unknown)} predicted {what} ids have no reference: {unknown[:10]}")
    missing = sorted(set(truth) - set(preds))
    if missing and not partial:
        raise FormatError(
            f"{len(missing)} {what} ids have no prediction: {missing[:10]} (use partial=True to "
            "score the predicted subset)"
        )
    return [k for k in truth if k in preds]


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


def _pil_to_tensor(image: Any, source: str) -> Any:
    """``(3, H, W)`` float in ``[0, 1]`` of a PIL image, through core's RGB conversion."""
    import numpy as np
    import torch

    from cm3leon.core.images import ImageInputError, to_pil_rgb

    try:
        rgb = to_pil_rgb(image, source=source)
    except ImageInputError as err:
        raise FormatError(f"{err.source}: cannot read image: {err.reason}") from None
    arr = np.asarray(rgb, dtype=np.uint8)  # (H, W, 3)
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
            yield _pil_to_tensor(seg.pil(), f"{source}: document {doc.id!r} image {j}")
    if count == 0:
        raise FormatError(f"{source}: the document shards hold no images")


def load_image_tensor(path: Path) -> Any:
    """An image file as a ``(3, H, W)`` float tensor in ``[0, 1]``.

    Read by core's hardened loader (:func:`cm3leon.core.images.load_image`): fully decoded,
    EXIF orientation applied, white behind transparency, 16-bit rescaled to 8 bits.

    Raises:
        FormatError: missing, empty, corrupt, truncated or oversized; the message starts
            with the path.
    """
    return _pil_to_tensor(Path(path), str(path))


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
