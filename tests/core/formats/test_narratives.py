"""cm3leon.core.formats.narratives: Localized Narratives JSONL."""

from __future__ import annotations

from pathlib import Path

import pytest

from cm3leon.core.formats.common import EntryError, iter_jsonl
from cm3leon.core.formats.narratives import (
    Narrative,
    image_names,
    parse_narrative,
    write_narratives,
)

ROWS = [Narrative("137576", "In this image there are cows.", 93, "mscoco_val2017", [{"utterance": "In"}],
                  [[{"x": 0.1, "y": 0.2, "t": 0.0}]], "coco_val/coco_val_137576_93.ogg")]  # fmt: skip


def test_round_trip(tmp_path: Path) -> None:
    file = tmp_path / "coco_val_localized_narratives.jsonl"
    write_narratives(file, ROWS)
    assert [parse_narrative(o, f"line {n}") for n, o in iter_jsonl(file)] == ROWS
    assert image_names("42")[:3] == ["42.jpg", "42.png", "000000000042.jpg"]


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "n.jsonl"
    file.write_text('{"image_id": "1", "caption": "ok"}\n{"image_id": [1], "caption": "x"}\n')
    rows = list(iter_jsonl(file))
    with pytest.raises(EntryError, match=rf"{file}: line 2: 'image_id' must be str/int"):
        for n, obj in rows:
            parse_narrative(obj, f"{file}: line {n}")
