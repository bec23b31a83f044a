"""InstructPix2Pix (sample folders and parquet) and OCR (``ocr.jsonl``) readers."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cm3leon.tasks.readers.common import FormatError, RecordError
from cm3leon.tasks.readers.ocr import read_ocr
from cm3leon.tasks.readers.pix2pix import read_instructpix2pix
from tests.tasks._helpers import (
    colour_of,
    solid,
    write_corrupt,
    write_image,
    write_json,
    write_jsonl,
)

RED, BLUE = (200, 30, 30), (30, 30, 200)


# ------------------------------------------------------------ sample folders
def _folders(root: Path) -> Path:
    prompt = {"input": "a red car", "edit": "make it blue", "output": "a blue car", "url": "x"}
    for sample in ("0000001", "0000002"):
        write_json(root / sample / "prompt.json", prompt)
        for seed in ("117", "2048"):
            write_image(root / sample / f"{seed}_0.jpg", RED, fmt="PNG")
            write_image(root / sample / f"{seed}_1.jpg", BLUE, fmt="PNG")
    return root


def test_folder_layout(tmp_path: Path) -> None:
    records = list(read_instructpix2pix(_folders(tmp_path)))
    assert [r["id"] for r in records] == ["0000001/117", "0000001/2048", "0000002/117", "0000002/2048"]
    r = records[0]
    assert (r["instruction"], r["input_caption"], r["output_caption"]) == ("make it blue", "a red car", "a blue car")
    assert colour_of(r["image"]) == RED and colour_of(r["edited_image"]) == BLUE


def test_folder_layout_malformed(tmp_path: Path) -> None:
    root = _folders(tmp_path)
    write_json(root / "0000001" / "prompt.json", {"input": "a", "output": "b"})
    (root / "0000002" / "2048_1.jpg").unlink()
    write_corrupt(root / "0000002" / "117_0.jpg")
    with pytest.raises(RecordError, match=r"0000001/prompt.json: missing key 'edit'"):
        list(read_instructpix2pix(root))
    stats: Counter = Counter()
    assert list(read_instructpix2pix(root, skip_bad=True, stats=stats)) == []
    assert stats == {"skipped": 3, "skipped.missing_key": 1, "skipped.missing_image": 1,
                     "skipped.corrupt_image": 1}  # fmt: skip


# ------------------------------------------------------------------- parquet
def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    solid(colour).save(buf, format="PNG")
    return buf.getvalue()


def _parquet(path: Path, rows: list[dict]) -> Path:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("original_prompt", pa.string()), ("original_image", image), ("edit_prompt", pa.string()),
                        ("edited_prompt", pa.string()), ("edited_image", image)])  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _row(edit: object = "make it blue", original: object = None, edited: object = None) -> dict:
    return {"original_prompt": "a red car", "edit_prompt": edit, "edited_prompt": "a blue car",
            "original_image": original if original is not None else {"bytes": _png(RED), "path": None},
            "edited_image": edited if edited is not None else {"bytes": _png(BLUE), "path": None}}  # fmt: skip


def test_parquet_layout(tmp_path: Path) -> None:
    _parquet(tmp_path / "data" / "train-00000-of-00001.parquet", [_row(), _row("add snow")])
    records = list(read_instructpix2pix(tmp_path / "data", split="train"))
    assert [(r["id"], r["instruction"]) for r in records] == [
        ("train-00000-of-00001/0", "make it blue"), ("train-00000-of-00001/1", "add snow")]
    assert colour_of(records[0]["image"]) == RED and colour_of(records[0]["edited_image"]) == BLUE


def test_parquet_malformed(tmp_path: Path) -> None:
    file = _parquet(tmp_path / "p.parquet", [
        _row(), _row(edit=None), _row(original={"bytes": b"garbage", "path": None}),
        _row(edited={"bytes": None, "path": "x.png"})])  # fmt: skip
    with pytest.raises(RecordError, match=r"p.parquet: row 1: missing key|p.parquet: row 1: 'edit_prompt'"):
        list(read_instructpix2pix(file))
    stats: Counter = Counter()
    assert len(list(read_instructpix2pix(file, skip_bad=True, stats=stats))) == 1
    assert stats == {"records": 1, "skipped": 3, "skipped.wrong_type": 1, "skipped.corrupt_image": 1,
                     "skipped.missing_image": 1}  # fmt: skip


def test_parquet_missing_column(tmp_path: Path) -> None:
    file = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"original_prompt": ["x"]}), file)
    with pytest.raises(FormatError, match=r"bad.parquet: missing column\(s\).*edit_prompt"):
        list(read_instructpix2pix(file))


# ----------------------------------------------------------------------- OCR
def test_ocr_jsonl(tmp_path: Path) -> None:
    write_image(tmp_path / "signs" / "a.png", RED)
    write_image(tmp_path / "signs" / "b.png", BLUE)
    write_jsonl(tmp_path / "ocr.jsonl", [{"image": "signs/a.png", "text": "OPEN"},
                                         {"image": "signs/b.png", "text": "EXIT 3"}])  # fmt: skip
    records = list(read_ocr(tmp_path))
    assert [(r["id"], r["text"]) for r in records] == [("1", "OPEN"), ("2", "EXIT 3")]
    assert colour_of(records[1]["image"]) == BLUE


def test_ocr_malformed(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", RED)
    write_corrupt(tmp_path / "c.png")
    file = write_jsonl(tmp_path / "ocr.jsonl", [
        {"image": "a.png", "text": "OK"}, {"image": "a.png"}, {"image": "a.png", "text": ["x"]},
        {"image": "missing.png", "text": "x"}, {"image": "c.png", "text": "x"}, "[1, 2]"])  # fmt: skip
    with pytest.raises(RecordError, match="ocr.jsonl: line 2: missing key 'text'"):
        list(read_ocr(file))
    stats: Counter = Counter()
    assert len(list(read_ocr(file, skip_bad=True, stats=stats))) == 1
    assert stats == {"records": 1, "skipped": 5, "skipped.missing_key": 1, "skipped.wrong_type": 2,
                     "skipped.missing_image": 1, "skipped.corrupt_image": 1}  # fmt: skip
    with pytest.raises(FormatError, match="no ocr_val.jsonl"):
        list(read_ocr(tmp_path, split="val"))
