"""docs/reliability.md stays true: every test it names exists, and its table adds up."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
REFERENCE_COUNT = 30
STATUSES = ("covered", "partly", "not yet")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")
ROW = re.compile(r"^\| (\d+) \|(.*)\|\s*$", re.M)


@cache
def _defined(path: Path) -> frozenset[str]:
    """``name`` and ``Class::name`` of every function and class defined in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{m.name}" for m in node.body
                         if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef))
    return frozenset(names)


def _rows() -> dict[int, list[str]]:
    return {int(n): [c.strip() for c in rest.split("|")] for n, rest in ROW.findall(DOC.read_text(encoding="utf-8"))}


def _status(cells: list[str]) -> str:
    return next((s for s in STATUSES if cells[-1].startswith(s)), cells[-1])


def test_every_named_test_exists() -> None:
    refs = TEST_REF.findall(DOC.read_text(encoding="utf-8"))
    assert len(refs) > REFERENCE_COUNT
    missing = [f"{file}::{name}" for file, name in refs
               if not (ROOT / file).is_file() or name not in _defined(ROOT / file)]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_one_row_per_reference_test_with_a_status() -> None:
    rows = _rows()
    assert sorted(rows) == list(range(1, REFERENCE_COUNT + 1))
    for number, cells in rows.items():
        status = _status(cells)
        assert status in STATUSES, f"row {number}: unknown status {cells[-1]!r}"
        named = TEST_REF.findall(cells[1])
        assert bool(named) == (status != "not yet"), f"row {number}: {status!r} with tests {named}"
        if status != "covered":
            assert ":" in cells[-1], f"row {number}: say what is missing after '{status}:'"


def test_counts_line_matches_the_table() -> None:
    statuses = [_status(cells) for cells in _rows().values()]
    counts = re.search(r"\*\*Counts:\*\* (\d+) covered, (\d+) partly, (\d+) not yet", DOC.read_text(encoding="utf-8"))
    assert counts is not None, "docs/reliability.md lacks the '**Counts:** ...' line"
    assert tuple(map(int, counts.groups())) == tuple(statuses.count(s) for s in STATUSES)
