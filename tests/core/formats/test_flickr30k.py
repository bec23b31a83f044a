"""cm3leon.core.formats.flickr30k: Karpathy's split file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cm3leon.core.formats.common import EntryError, FormatError
from cm3leon.core.formats.flickr30k import (
    KarpathyImage,
    load_karpathy,
    parse_karpathy_image,
    write_karpathy,
)

IMAGES = [KarpathyImage("1.jpg", "train", ("Two dogs run.", "Dogs!")), KarpathyImage("2.jpg", "test", ("A cat.",))]


def test_round_trip(tmp_path: Path) -> None:
    file = tmp_path / "dataset_flickr30k.json"
    write_karpathy(file, IMAGES)
    entries = load_karpathy(file)
    assert [parse_karpathy_image(e, f"images[{i}]") for i, e in enumerate(entries)] == IMAGES
    assert entries[1]["sentences"][0] == {"raw": "A cat.", "tokens": ["a", "cat"], "imgid": 1, "sentid": 2}
    assert entries[0]["sentids"] == [0, 1] and json.loads(file.read_text())["dataset"] == "flickr30k"


def test_malformed_entry_names_file_and_entry(tmp_path: Path) -> None:
    file = tmp_path / "dataset_flickr30k.json"
    file.write_text(json.dumps({"images": [{"filename": "1.jpg", "sentences": [{"raw": "ok"}, {"tokens": []}]}]}))
    (entry,) = load_karpathy(file)
    with pytest.raises(EntryError, match=rf"{file}: images\[0\]\.sentences\[1\]: missing key 'raw'"):
        parse_karpathy_image(entry, f"{file}: images[0]")
    file.write_text(json.dumps({"dataset": "flickr30k"}))
    with pytest.raises(FormatError, match="needs a top-level 'images' list"):
        load_karpathy(file)
