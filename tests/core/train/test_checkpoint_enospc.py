"""A training checkpoint save that hits a real full disk (ENOSPC on a small tmpfs).

The save must raise a clear error (ENOSPC, naming the checkpoint and ``latest``; torch itself
says only ``[enforce fail at inline_container.cc] unexpected pos``), ``latest`` must still name
the previous checkpoint, that checkpoint must load, and no partial file may be left behind.  Mounting a tmpfs needs root
(or CAP_SYS_ADMIN); elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cm3leon.core.config import load_config
from cm3leon.core.train import TrainConfig, train
from cm3leon.core.train.composer_checkpoints import check_checkpoint, load_checkpoint_state
from tests.core.train._helpers import tiny_config


def _mount_tmpfs(mount: Path, size: int) -> None:
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {proc.stderr.strip() or proc.returncode}")


@pytest.fixture
def checkpoint_size(tmp_path_factory: pytest.TempPathFactory, token_data: Path) -> int:
    """Bytes of one checkpoint of the tiny run (every checkpoint of it has the same size, to a page)."""
    run = tmp_path_factory.mktemp("sizing") / "run"
    train(load_config(TrainConfig, data=tiny_config(run, {"ra": {"local": str(token_data)}}, max_duration="2ba")))
    return (run / "checkpoints" / "ep0-ba2-rank0.pt").stat().st_size


@pytest.fixture
def small_disk(tmp_path: Path, checkpoint_size: int) -> Iterator[Path]:
    """A tmpfs that holds one checkpoint and a half: the second save runs out of space."""
    mount = tmp_path / "disk"
    mount.mkdir()
    _mount_tmpfs(mount, checkpoint_size * 3 // 2)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)  # lazy: a mapping may be open


def _raised_enospc(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC or "No space left" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def test_checkpoint_save_on_a_full_disk_keeps_the_previous_one(tmp_path: Path, token_data: Path,
                                                               small_disk: Path) -> None:
    folder = small_disk / "checkpoints"
    cfg = load_config(TrainConfig, data=tiny_config(tmp_path / "run", {"ra": {"local": str(token_data)}},
                                                   max_duration="6ba", **{"checkpoint.save_folder": str(folder)}))
    with pytest.raises(OSError) as err:  # noqa: PT011 - the errno and message are checked below
        train(cfg)
    assert _raised_enospc(err.value), f"not a disk-full error: {err.value!r}"
    # not torch's "[enforce fail at inline_container.cc:672] . unexpected pos 145728 vs 145616":
    assert err.value.errno == errno.ENOSPC
    assert str(err.value).startswith(f"[Errno 28] No space left on device while saving checkpoint "
                                     f"{folder / 'ep0-ba4-rank0.pt'}: its partial write was removed and "
                                     f"{folder / 'latest-rank0.pt'} still names the newest complete checkpoint")
    latest = folder / "latest-rank0.pt"
    assert os.readlink(latest) == "ep0-ba2-rank0.pt"
    finals = sorted(p.name for p in folder.iterdir())
    assert finals == ["ep0-ba2-rank0.pt", "latest-rank0.pt"]  # nothing torn under a final name, no partial left
    check_checkpoint(latest)
    assert load_checkpoint_state(latest)["state"]["timestamp"]["Timestamp"]["batch"] == 2
