"""Corpus fixtures written by the real libraries (webdataset.TarWriter, pyarrow, datasets).

A corpus is a list of :class:`Sample` (caption ``None``: missing; ``corrupt``: the image
bytes are a truncated PNG).  Shared by tests/core/test_corpus_sources.py and the source
conformance inputs of tests/core/test_behaviour_conformance.py.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Sample:
    key: str
    caption: str | None
    size: tuple[int, int] = (6, 4)
    corrupt: bool = False

    def pixels(self) -> np.ndarray:
        """The sample's image, (H, W, 3) uint8, distinct per key."""
        w, h = self.size
        seed = sum(map(ord, self.key))
        return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)

    def png(self) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.pixels()).save(buf, format="PNG")
        data = buf.getvalue()
        return data[: len(data) // 2] if self.corrupt else data


def corpus(*, bad: str | None = None) -> list[Sample]:
    """Three good samples; ``bad="image"`` or ``"caption"`` makes the second one bad."""
    second = Sample("000001", "a red circle", (5, 7))
    if bad == "image":
        second = Sample("000001", "a red circle", (5, 7), corrupt=True)
    elif bad == "caption":
        second = Sample("000001", None, (5, 7))
    return [Sample("000000", "a blue square"), second, Sample("000002", "two shapes", (3, 3))]


def write_tars(folder: Path, samples: list[Sample], per_shard: int = 2, image_ext: str = "png") -> list[Path]:
    """img2dataset-layout shards ``folder/00000.tar ...``: ``<key>.png|jpg``, ``.txt``, ``.json``."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(samples), per_shard):
        shard = folder / f"{start // per_shard:05d}.tar"
        with wds.TarWriter(str(shard)) as sink:
            for s in samples[start: start + per_shard]:
                record: dict[str, object] = {"__key__": s.key, image_ext: s.png(),
                                             "json": {"url": f"https://example.org/{s.key}.png", "key": s.key,
                                                      "status": "success"}}  # fmt: skip
                if s.caption is not None:
                    record["txt"] = s.caption
                sink.write(record)
        shards.append(shard)
    return shards


def write_parquet(path: Path, samples: list[Sample], *, failed: int = 0, row_group_size: int = 2) -> Path:
    """An img2dataset parquet shard (``key``, ``jpg``, ``txt``, ``url``, ``status``,
    ``error_message``); ``failed`` extra rows are failed downloads (``jpg`` null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"key": s.key, "jpg": s.png(), "txt": s.caption, "url": f"https://example.org/{s.key}.png",
             "status": "success", "error_message": None} for s in samples]  # fmt: skip
    rows += [{"key": f"9{i:05d}", "jpg": None, "txt": None, "url": f"https://example.org/gone{i}.png",
              "status": "failed_to_download", "error_message": "HTTP Error 404"} for i in range(failed)]  # fmt: skip
    schema = pa.schema([("key", pa.string()), ("jpg", pa.binary()), ("txt", pa.string()), ("url", pa.string()),
                        ("status", pa.string()), ("error_message", pa.string())])  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


def write_hf(folder: Path, samples: list[Sample], *, split: str | None = None) -> Path:
    """A ``datasets`` ``save_to_disk`` folder with an ``Image`` column and a ``caption`` column
    (a ``DatasetDict`` with that one split when ``split`` is given)."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    data = {"image": [{"bytes": s.png(), "path": None} for s in samples], "caption": [s.caption for s in samples]}
    ds = datasets.Dataset.from_dict(data, features=features)
    (datasets.DatasetDict({split: ds}) if split else ds).save_to_disk(str(folder))
    return folder


def write_tsv(path: Path, samples: list[Sample], image_root: Path | None) -> Path:
    """CC3M layout: ``caption<TAB>url``, no header; the images mirrored under
    ``image_root/<host>/<path>`` (a corrupt sample's file is truncated, a caption ``None`` is
    empty).  Without ``image_root``: ``caption<TAB>images/<key>.png``, relative to the TSV."""
    lines = []
    for s in samples:
        url = f"https://img.example.org/cc3m/{s.key}.png?w=1" if image_root else f"images/{s.key}.png"
        local = image_root / "img.example.org" / "cc3m" / f"{s.key}.png" if image_root else path.parent / url
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(s.png())
        lines.append(f"{s.caption or ''}\t{url}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path
