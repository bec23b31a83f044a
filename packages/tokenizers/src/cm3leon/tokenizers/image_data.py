"""Training images for the VQ-GAN: image folders and MDS document shards.

Both sources yield preprocessed pixel tensors ``(3, S, S)`` in ``[-1, 1]`` through
:mod:`cm3leon.tokenizers.image_io` (any mode -> RGB, shortest-side resize, centre
crop).  A bad image never stops training: it is logged once with its name and
skipped (the folder dataset substitutes the next readable file).

MDS shards are the document shards of :mod:`cm3leon.core.shards` (``cm3leon data
prepare``): every image segment of every document is a training image.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset, IterableDataset

from cm3leon.tokenizers.image_io import (
    ImageInputError,
    Preprocess,
    preprocess_image,
    to_pil_rgb,
    to_pixels,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "FolderImageDataset",
    "MDSImageDataset",
    "expand_image_paths",
    "find_mds_dirs",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def expand_image_paths(patterns: Sequence[str]) -> list[Path]:
    """Image files named by ``patterns`` (files, directories searched recursively, globs).

    Raises:
        FileNotFoundError: a pattern matches nothing (names it).
    """
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file()]
        if not matches:
            raise FileNotFoundError(f"{pattern}: no image files found")
        found.extend(matches)
    return found


def find_mds_dirs(patterns: Sequence[str]) -> list[Path]:
    """Directories (given or below the given ones) holding an MDS ``index.json``."""
    dirs: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        candidates = [path] if path.is_dir() else [Path(p) for p in sorted(glob.glob(pattern))]
        for c in candidates:
            dirs.extend(sorted(i.parent for i in c.rglob("index.json")) if c.is_dir() else [])
    return dirs


def _flip(pixels: torch.Tensor, p: float) -> torch.Tensor:
    if p > 0 and float(torch.rand(())) < p:
        return pixels.flip(-1)
    return pixels


class FolderImageDataset(Dataset):
    """Map-style dataset over image files.

    Args:
        paths: image files.
        prep: preprocessing (size, resize mode, background).
        flip_p: probability of a horizontal flip (augmentation).
    """

    def __init__(self, paths: Sequence[str | Path], prep: Preprocess, *, flip_p: float = 0.0) -> None:
        if not paths:
            raise ValueError("FolderImageDataset: no image files")
        self.paths = [Path(p) for p in paths]
        self.prep = prep
        self.flip_p = flip_p
        self.failed: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> torch.Tensor:
        """Pixels of image ``index`` ``(3, S, S)``; raises :class:`ImageInputError` naming the file."""
        source = str(self.paths[index])
        img = to_pil_rgb(self.paths[index], source=source, background=self.prep.background,
                         exif_transpose=self.prep.exif_transpose)
        return to_pixels(preprocess_image(img, self.prep, source=source))

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self.paths)
        for offset in range(n):
            i = (index + offset) % n
            try:
                return _flip(self.load(i), self.flip_p)
            except ImageInputError as err:
                if err.source not in self.failed:
                    self.failed[err.source] = err.reason
                    log.warning("skipping unreadable training image %s", err)
        raise ValueError(f"FolderImageDataset: none of the {n} images could be read (first: {next(iter(self.failed.items()))})")


class MDSImageDataset(IterableDataset):
    """Iterates the images of MDS document shards (``cm3leon.core.shards`` format).

    Reading goes through :class:`cm3leon.core.shard_datasets.DocumentStreamingDataset`,
    which verifies each directory (``COMPLETE`` marker, manifest, hashes) before
    ``StreamingDataset`` opens it, partitions samples across ranks and dataloader workers
    and reshuffles every epoch.

    Args:
        directories: local document-shard directories.
        prep: preprocessing.
        shuffle: shuffle documents (seeded).
        seed: shuffle seed.
        flip_p: horizontal-flip probability.
        batch_size: the training batch size (``StreamingDataset`` partitions by it).
    """

    def __init__(self, directories: Sequence[str | Path], prep: Preprocess, *, shuffle: bool = True,
                 seed: int = 0, flip_p: float = 0.0, batch_size: int = 1) -> None:
        if not directories:
            raise ValueError("MDSImageDataset: no MDS directories")
        from streaming import Stream

        from cm3leon.core.shard_datasets import DocumentStreamingDataset

        self.directories = [Path(d) for d in directories]
        self.prep, self.flip_p = prep, flip_p
        self.failed: dict[str, str] = {}
        streams = [Stream(local=str(d)) for d in self.directories]
        self.documents = DocumentStreamingDataset(streams=streams, shuffle=shuffle, shuffle_seed=seed,
                                                  batch_size=batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        yielded = 0
        for sample in self.documents:
            doc = sample["document"]
            for k, seg in enumerate(doc.images):
                if seg.image is None:  # codes-only segment: nothing to reconstruct
                    continue
                source = f"document {sample['id']!r} image {k}"
                try:
                    img = to_pil_rgb(seg.image, source=source, background=self.prep.background)
                    pixels = to_pixels(preprocess_image(img, self.prep, source=source))
                except ImageInputError as err:
                    if source not in self.failed:
                        self.failed[source] = err.reason
                        log.warning("skipping unusable training image %s", err)
                    continue
                yielded += 1
                yield _flip(pixels, self.flip_p)
        if yielded == 0:
            raise ValueError(f"MDSImageDataset: no usable images in {', '.join(map(str, self.directories))}")
