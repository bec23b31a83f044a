"""cm3leon.core.formats.instruct_pix2pix: sample folders and the parquet columns."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cm3leon.core.formats.common import EntryError, FormatError
from cm3leon.core.formats.instruct_pix2pix import (
    PARQUET_COLUMNS,
    Prompt,
    decode_image_cell,
    first_image,
    iter_parquet_rows,
    read_prompt,
    sample_seeds,
    write_sample,
)


def test_sample_folder_round_trip(tmp_path: Path) -> None:
    source, target = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    folder = tmp_path / "val" / "0000001"
    write_sample(folder, 1234, source, target, Prompt("a cat", "make it white", "a white cat"))
    assert read_prompt(folder / "prompt.json") == Prompt("a cat", "make it white", "a white cat")
    assert sample_seeds(folder) == ["1234"]
    assert first_image(folder, "_0") == folder / "1234_0.jpg" and first_image(folder, "_1") == folder / "1234_1.jpg"
    assert (folder / "metadata.jsonl").read_text() == '{"seed": 1234}\n'


def test_malformed_prompt_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "0000001" / "prompt.json"
    file.parent.mkdir()
    file.write_text(json.dumps({"input": "a", "output": "b"}))
    with pytest.raises(EntryError, match=rf"{file}: missing key 'edit'") as info:
        read_prompt(file)
    assert info.value.reason == "missing_key"
    file.write_text("{")
    with pytest.raises(EntryError, match="not valid JSON"):
        read_prompt(file)


def test_parquet_rows_and_image_cells(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG")
    cell = {"bytes": buf.getvalue(), "path": "x.png"}
    table = pa.table({"original_prompt": ["a"], "original_image": [cell], "edit_prompt": ["e"],
                      "edited_prompt": ["b"], "edited_image": [cell]})  # fmt: skip
    pq.write_table(table, tmp_path / "p.parquet")
    ((row, values),) = list(iter_parquet_rows(tmp_path / "p.parquet"))
    assert row == 0 and set(values) == set(PARQUET_COLUMNS)
    assert decode_image_cell(values["edited_image"], "w").getpixel((0, 0)) == (9, 9, 9)
    with pytest.raises(EntryError, match="p.parquet: row 0 edited_image: image bytes are corrupt"):
        decode_image_cell({"bytes": b"nope"}, f"{tmp_path / 'p.parquet'}: row 0 edited_image")
    pq.write_table(table.drop(["edit_prompt"]), tmp_path / "bad.parquet")
    with pytest.raises(FormatError, match=r"bad\.parquet: missing column\(s\) \['edit_prompt'\]"):
        list(iter_parquet_rows(tmp_path / "bad.parquet"))
