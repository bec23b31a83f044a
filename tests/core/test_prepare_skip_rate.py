"""``data prepare --skip-bad --max-skip-rate``: too many bad items aborts (reliability row 18).

Skipping a few corrupt images is what ``--skip-bad`` is for; a source where a quarter of the
images are broken is a broken source, and a run that quietly keeps the other three quarters
hides it.  Over the threshold the command fails naming the counts and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cm3leon.core.cli import cli
from cm3leon.core.data_cli import SkipRateError, prepare_dataset
from cm3leon.core.documents import Document
from cm3leon.core.shards import iter_documents


def pairs(root: Path, good: int, bad: int) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(good):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / f"good{i}.png")
        (root / f"good{i}.txt").write_text(f"good {i}", encoding="utf-8")
    for i in range(bad):
        (root / f"bad{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
        (root / f"bad{i}.txt").write_text(f"bad {i}", encoding="utf-8")
    return root


def prepare(folder: Path, out: Path, *extra: str) -> object:
    return CliRunner().invoke(cli, ["data", "prepare", "--source", "folder", str(folder), "--out", str(out),
                                    "--skip-bad", *extra])  # fmt: skip


def test_over_the_threshold_fails_naming_the_counts_and_writes_nothing(tmp_path: Path) -> None:
    folder = pairs(tmp_path / "pairs", good=3, bad=1)
    out = tmp_path / "out"
    failed = prepare(folder, out, "--max-skip-rate", "0.2")
    assert failed.exit_code != 0
    assert "skipped 1 of 4 items (25.0%), over max skip rate 20.0%" in failed.output
    assert str(folder / "bad0.png") in failed.output and str(out) in failed.output
    assert not out.exists()
    ok = prepare(folder, out, "--max-skip-rate", "0.25")  # at the threshold: allowed
    assert ok.exit_code == 0, ok.output
    assert [d.text for d in iter_documents(out)] == ["good 0", "good 1", "good 2"]


def test_without_a_threshold_skipping_is_unbounded_and_the_flag_needs_skip_bad(tmp_path: Path) -> None:
    folder = pairs(tmp_path / "pairs", good=1, bad=3)
    assert prepare(folder, tmp_path / "all").exit_code == 0
    result = CliRunner().invoke(cli, ["data", "prepare", "--source", "folder", str(folder),
                                      "--out", str(tmp_path / "x"), "--max-skip-rate", "0.5"])  # fmt: skip
    assert result.exit_code == 2 and "--max-skip-rate limits --skip-bad" in result.output


class _Counted(list):
    """Documents from a reader that summarises its skips in one entry, with the true count."""

    skipped = [("reader data.json", "5 record(s) skipped")]
    num_skipped = 5


def test_a_summarised_skip_counts_as_its_number_of_items(tmp_path: Path) -> None:
    docs = _Counted(Document.of(f"text {i}", id=str(i)) for i in range(20))
    report = prepare_dataset(docs, tmp_path / "ok", skip_bad=True, max_skip_rate=0.2, progress=False)
    assert report.written == 20  # 5 of 25 = 20%
    with pytest.raises(SkipRateError, match=r"skipped 5 of 25 items \(20.0%\), over max skip rate 19.0%"):
        prepare_dataset(docs, tmp_path / "bad", skip_bad=True, max_skip_rate=0.19, progress=False)
    assert not (tmp_path / "bad").exists()
