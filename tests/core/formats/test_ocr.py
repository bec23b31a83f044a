"""cm3leon.core.formats.ocr: cm3leon's ``ocr.jsonl``."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.formats.common import EntryError, iter_jsonl
from cm3leon.core.formats.ocr import OCRLine, ocr_file_names, parse_ocr_line, write_ocr


def test_round_trip(tmp_path: Path) -> None:
    rows = [OCRLine("images/000000000001.jpg", "OPEN"), OCRLine("images/2.jpg", "EXIT", id="s2")]
    write_ocr(tmp_path / "val" / "ocr.jsonl", rows)
    assert [parse_ocr_line(o, f"line {n}") for n, o in iter_jsonl(tmp_path / "val" / "ocr.jsonl")] == rows
    assert "val/ocr.jsonl" in ocr_file_names("val")


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "ocr.jsonl"
    file.write_text('{"image": "a.jpg"}\n')
    ((n, obj),) = list(iter_jsonl(file))
    with pytest.raises(EntryError, match=rf"{file}: line 1: missing key 'text'"):
        parse_ocr_line(obj, f"{file}: line {n}")
