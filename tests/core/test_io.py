"""Atomic writes never leave partial outputs under their final names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cm3leon.core.io import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    is_complete,
    read_json,
    sha256_file,
)


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.bin"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in path.parent.iterdir()] == ["b.bin"]  # no temp files left
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # same mode as a plain open()


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.json"
    atomic_write_json(path, {"v": 1})

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(path, {"v": 2})
    monkeypatch.undo()
    assert read_json(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_atomic_directory_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "shards"
    with pytest.raises(RuntimeError, match="midway"), atomic_directory(target) as tmp:
        (tmp / "part-0").write_text("half")
        raise RuntimeError("midway")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "part-0").write_text("full")
    assert is_complete(target) and (target / "part-0").read_text() == "full"
    with pytest.raises(FileExistsError, match="already exists"), atomic_directory(target):
        pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "part-1").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["COMPLETE", "part-1"]


def test_read_json_errors_name_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        read_json(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        read_json(tmp_path / "missing.json")


def test_sha256(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    assert sha256_file(path, chunk_size=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
