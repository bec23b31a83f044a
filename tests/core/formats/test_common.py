"""cm3leon.core.formats.common: JSON/JSONL I/O, field checks and the error types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cm3leon.core.formats.common import (
    EntryError,
    FormatError,
    checked,
    entry_field,
    find_annotation_file,
    iter_jsonl,
    load_json,
    save_jpeg,
    save_png,
    write_json,
    write_jsonl,
)


def test_json_and_jsonl_round_trip(tmp_path: Path) -> None:
    write_json(tmp_path / "a" / "x.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "a" / "x.json").read_text() == '{"a": [1, 2], "b": 1}\n'
    assert load_json(tmp_path / "a" / "x.json") == {"a": [1, 2], "b": 1}
    write_jsonl(tmp_path / "x.jsonl", [{"k": 1}, {"k": 2}])
    assert list(iter_jsonl(tmp_path / "x.jsonl")) == [(1, {"k": 1}), (2, {"k": 2})]


def test_file_level_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"nope\.json: file not found"):
        load_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{no")
    with pytest.raises(FormatError, match=r"bad\.json: not valid JSON"):
        load_json(tmp_path / "bad.json")
    write_json(tmp_path / "list.json", [])
    with pytest.raises(FormatError, match=r"list\.json: top level must be a JSON object, got list"):
        load_json(tmp_path / "list.json")
    with pytest.raises(FormatError, match=r"no COCO captions file"):
        find_annotation_file(tmp_path, ("captions_*.json",), None, "COCO captions")


def test_entry_errors_name_the_entry_and_reason() -> None:
    with pytest.raises(EntryError, match=r"f\.json: \[3\]: missing key 'k'") as info:
        entry_field({}, "k", str, "f.json: [3]")
    assert info.value.reason == "missing_key" and isinstance(info.value, FormatError)
    with pytest.raises(EntryError, match="'k' must be int, got bool") as info:
        entry_field({"k": True}, "k", int, "w")
    assert info.value.reason == "wrong_type"
    with pytest.raises(EntryError, match="'k' is empty"):
        entry_field({"k": "  "}, "k", str, "w")


def test_bad_jsonl_lines_raise_or_go_to_on_error(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n\nnot json\n[1]\n{"a": 2}\n')
    with pytest.raises(EntryError, match=r"x\.jsonl: line 3: not valid JSON"):
        list(iter_jsonl(tmp_path / "x.jsonl"))
    seen: list[EntryError] = []
    assert [n for n, _ in iter_jsonl(tmp_path / "x.jsonl", seen.append)] == [1, 5]
    assert [e.reason for e in seen] == ["bad_json", "wrong_type"]
    assert checked(lambda: entry_field({}, "k", str, "w"), seen.append) is None and len(seen) == 3


def test_image_writers(tmp_path: Path) -> None:
    rgb = np.full((4, 6, 3), 200, np.uint8)
    save_jpeg(tmp_path / "i" / "a.jpg", rgb)
    save_png(tmp_path / "a.png", rgb)
    with Image.open(tmp_path / "i" / "a.jpg") as im:
        assert im.format == "JPEG" and im.size == (6, 4)
    assert (np.asarray(Image.open(tmp_path / "a.png")) == rgb).all()
