"""A real disk-full (ENOSPC) on a small tmpfs: atomic writes fail cleanly, the previous output intact.

The other I/O tests simulate a failure with a monkeypatched ``os.replace``; here the kernel
itself refuses the bytes.  Mounting a tmpfs needs root (or CAP_SYS_ADMIN); elsewhere the
tests are skipped with the reason.  Each test first shows that a plain, non-atomic write on
the same filesystem *does* lose the previous file, so the fixture really fills the disk
and a non-atomic implementation would fail the test.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cm3leon.core.exported import load_exported, save_exported
from cm3leon.core.io import atomic_directory, atomic_write_bytes, is_complete
from cm3leon.core.model import CM3LeonTransformer, TransformerConfig
from cm3leon.core.vocab import Vocabulary

SIZE = 256 * 1024  # bytes of the tmpfs
BIG = b"x" * (2 * SIZE)  # cannot fit


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted at ``tmp_path/disk`` (unmounted afterwards)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {proc.stderr.strip() or proc.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)  # lazy: a mapping may be open


def _naive_write_loses_the_file(disk: Path) -> None:
    """The control: overwriting in place on a full disk destroys the previous contents."""
    victim = disk / "naive.bin"
    victim.write_bytes(b"previous")
    with pytest.raises(OSError) as err:
        victim.write_bytes(BIG)
    assert err.value.errno == errno.ENOSPC and victim.read_bytes() != b"previous"
    victim.unlink()


def test_atomic_write_bytes_on_a_full_disk_keeps_the_previous_file(small_disk: Path) -> None:
    _naive_write_loses_the_file(small_disk)
    path = small_disk / "state.bin"
    atomic_write_bytes(path, b"previous")
    with pytest.raises(OSError) as err:
        atomic_write_bytes(path, BIG)
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in small_disk.iterdir()) == ["state.bin"]  # no temporary file left
    atomic_write_bytes(path, b"next")  # the space was given back
    assert path.read_bytes() == b"next"


def test_atomic_directory_on_a_full_disk_keeps_the_previous_directory(small_disk: Path) -> None:
    _naive_write_loses_the_file(small_disk)
    out = small_disk / "out"
    with atomic_directory(out) as tmp:
        (tmp / "part-0").write_bytes(b"v1")
    with pytest.raises(OSError) as err, atomic_directory(out, overwrite=True) as tmp:
        (tmp / "part-0").write_bytes(b"v2")
        (tmp / "part-1").write_bytes(BIG)
    assert err.value.errno == errno.ENOSPC
    assert is_complete(out) and (out / "part-0").read_bytes() == b"v1"
    assert sorted(p.name for p in out.iterdir()) == ["COMPLETE", "part-0"]
    leftovers = [p.name for p in small_disk.iterdir() if p.name != "out" and not p.name.endswith(".lock")]
    assert leftovers == []  # the .partial directory was removed


def test_export_on_a_full_disk_keeps_the_previous_export_loadable(small_disk: Path) -> None:
    vocab = Vocabulary(text_size=32, image_size=16, num_sentinels=2)

    def model(d_model: int) -> CM3LeonTransformer:
        torch.manual_seed(0)
        return CM3LeonTransformer(TransformerConfig(vocab_size=vocab.size, d_model=d_model, n_layers=1,
                                                    n_heads=2, d_ff=2 * d_model, max_seq_len=16))

    small = model(16)
    out = save_exported(small, small_disk / "export", vocab=vocab)
    with pytest.raises(OSError, match=f"{out / 'model.safetensors'}: cannot write") as err:
        save_exported(model(256), out, vocab=vocab, overwrite=True)  # ~1.6 MB of weights
    assert err.value.errno == errno.ENOSPC
    reloaded = load_exported(out).model  # still the small one, hash-checked
    ids = torch.arange(8)[None]
    torch.testing.assert_close(reloaded(ids), small.eval()(ids), rtol=0, atol=0)
    assert [p.name for p in small_disk.iterdir() if not p.name.endswith(".lock")] == ["export"]
