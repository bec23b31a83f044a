"""cm3leon.core.formats.paragraph: ``paragraphs_v1.json`` and the split id files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.formats.common import EntryError, FormatError, write_json
from cm3leon.core.formats.paragraph import (
    Paragraph,
    image_names,
    load_paragraphs,
    load_split_ids,
    parse_paragraph,
    write_image_paragraph,
)

ROWS = [Paragraph(7, "images/7.jpg", "A clock tower. It is tall."), Paragraph(8, None, "A cat.")]


def test_round_trip(tmp_path: Path) -> None:
    write_image_paragraph(tmp_path, ROWS, {"train": [7], "val": [8], "test": []})
    entries = load_paragraphs(tmp_path / "paragraphs_v1.json")
    assert [parse_paragraph(e, f"[{i}]") for i, e in enumerate(entries)] == ROWS
    assert load_split_ids(tmp_path / "paragraphs_v1.json", "val") == {"8"}
    assert image_names(entries[0]) == ["7.jpg", "7.jpg", "7.png"]


def test_malformed_entry_and_missing_split(tmp_path: Path) -> None:
    file = tmp_path / "paragraphs_v1.json"
    write_json(file, [{"image_id": 1}])
    (entry,) = load_paragraphs(file)
    with pytest.raises(EntryError, match=rf"{file}: \[0\]: missing key 'paragraph'"):
        parse_paragraph(entry, f"{file}: [0]")
    with pytest.raises(FormatError, match="split 'val' needs .*val_split.json"):
        load_split_ids(file, "val")
