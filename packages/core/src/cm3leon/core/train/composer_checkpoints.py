"""Checkpoints: safe loading, atomic saving, ``latest`` that is always complete, export.

**Loading never unpickles untrusted code.**  Composer 0.32.1 restores a checkpoint with
``torch.load(weights_only=False)`` (monolithic files) and ``pickle.load`` /
``torch.load(weights_only=False)`` (sharded ``.metadata`` and byte items), so a crafted
file could run code.  Every file Composer is about to read first goes through
:func:`validate_checkpoint`, installed as Composer's ``CHECKPOINT_VALIDATION_FUNCTION``
hook (:func:`install_checkpoint_guard`), which is called right before each of those
loads: a monolithic file is unpickled with ``torch.load(weights_only=True)`` under an
explicit allowlist (:func:`allowed_globals`: numpy arrays for RNG state, ``timedelta``
for timestamps, ``TorchVersion`` for metadata), sharded ``.metadata`` with a restricted
unpickler that admits only the ``torch.distributed.checkpoint`` metadata classes, and
every byte item of a ``.distcp`` file weights-only as well.  Anything else raises
:class:`UnsafeCheckpointError` naming the file and the refused global; there is no
fallback to unsafe loading.  :func:`check_resume_checkpoint` runs the same checks before
the Trainer is even built, so a bad file fails in seconds.

**Saving is atomic.**  Composer writes a checkpoint straight under its final name and
replaces ``latest-rank0.pt`` by ``remove`` + ``symlink`` (a crash in between leaves no
``latest``, and autoresume silently starts from scratch).  :class:`AtomicCheckpointSaver`
saves into a hidden ``.partial-*`` directory, fsyncs, renames the result into place,
then points ``latest`` at it with ``symlink`` to a temporary name + ``os.replace``.

**A checkpoint is committed by one atomic step: the ``os.replace`` that gives it its final
name** (``ep{E}-ba{B}-rank0.pt``; the file was fsynced first, so a final name always holds
a complete checkpoint).  ``latest`` is a pointer derived from the committed checkpoints,
and :func:`recover_save_folder` re-derives it at start-up (before Composer's autoresume
reads it): a kill between the rename and the ``latest`` swing (issue 20 item 7: the
restart then resumed from the older ``latest`` and Composer refused the newer file with
``FileExistsError: ... may conflict with a future checkpoint``) is repaired by pointing
``latest`` at the newest committed checkpoint, and ``.partial-*`` leftovers of a save
killed before its rename are removed.  So a kill at any instant -- before the write,
mid-write, after the rename, after ``latest`` moved -- restarts from the newest complete
checkpoint.  The named points of a save (:data:`SAVE_POINTS`) are reported to
:meth:`AtomicCheckpointSaver._reached`, a no-op that tests replace to SIGKILL the process
exactly there (``tests/core/train/_kill_train.py``).

**Object stores.**  With ``remote`` (``s3://...``) the saver commits locally as above, then
uploads the committed checkpoint, ``latest`` pointer last, and :meth:`AtomicCheckpointSaver.init`
first downloads the newest remote commit (:mod:`cm3leon.core.train.object_store`), so the
checkpoint Composer loads is a local file that passes the same guard.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import pickle
import re
import shutil
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from composer.callbacks import CheckpointSaver
from composer.core import State
from composer.loggers import Logger
from composer.utils import checkpoint as composer_checkpoint
from composer.utils import dist, format_name_with_dist, reproducibility

from cm3leon.core.io import fsync_path

__all__ = [
    "AtomicCheckpointSaver",
    "LATEST_FILENAME",
    "RUN_INFO_KEY",
    "UnsafeCheckpointError",
    "allowed_globals",
    "check_checkpoint",
    "check_resume_checkpoint",
    "install_checkpoint_guard",
    "load_checkpoint_state",
    "read_run_info",
    "recover_save_folder",
    "validate_checkpoint",
]

log = logging.getLogger(__name__)

VALIDATION_ENV = "CHECKPOINT_VALIDATION_FUNCTION"
GUARD = "cm3leon.core.train.composer_checkpoints.validate_checkpoint"
LATEST_FILENAME = "latest-rank{rank}.pt"
CHECKPOINT_FILENAME = "ep{epoch}-ba{batch}-rank{rank}.pt"
PARTIAL_PREFIX = ".partial-"
#: Final names of committed checkpoints of rank 0: monolithic files and sharded directories.
_COMMITTED = re.compile(r"^ep(?P<epoch>\d+)-ba(?P<batch>\d+)(-rank0\.pt)?$")
#: The named points of one save, in order (see :meth:`AtomicCheckpointSaver._reached`).
SAVE_POINTS = ("before_write", "mid_write", "before_latest", "after_latest")
#: Key of the run description (architecture, vocabulary) in ``state["callbacks"]``.
RUN_INFO_KEY = "RunInfo"


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects outside the allowlist (it could run code when loaded)."""


# ------------------------------------------------------------------ allowlists
@lru_cache(maxsize=1)
def allowed_globals() -> tuple[Any, ...]:
    """Globals a Composer checkpoint of a cm3leon run legitimately contains.

    Found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on real
    checkpoints: numpy's array reconstruction (the numpy RNG state in ``rng``),
    ``datetime.timedelta`` (wall-clock fields of ``Timestamp``) and ``TorchVersion``
    (checkpoint metadata).  None of them can call arbitrary code: ``_reconstruct`` only
    builds arrays of allowlisted classes and dtypes, and nested objects of an object
    array still pass through the same restricted unpickler.
    """
    import datetime

    import numpy as np
    from torch.torch_version import TorchVersion

    names: list[Any] = [np.ndarray, np.dtype, datetime.timedelta, TorchVersion]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            names.append(__import__(module, fromlist=["_reconstruct"])._reconstruct)
        except (ImportError, AttributeError):
            continue
    # numpy >= 1.25 pickles dtypes by their class (numpy.dtypes.UInt32DType, ...).
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and n != "StringDType"]
    return tuple(dict.fromkeys(names))


_METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
        "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickler for ``torch.distributed.checkpoint`` ``.metadata`` files: data classes only."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _METADATA_CLASSES.get(module, set())
        if name in allowed or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in checkpoint metadata")


# ------------------------------------------------------------------ checking
def _refuse(path: str | Path, err: BaseException) -> UnsafeCheckpointError:
    text = str(err)
    found = re.search(r"GLOBAL (\S+) was not an allowed global", text) or re.search(r"global (\S+) is not allowed", text)
    reason = f"refused global {found.group(1)}" if found else text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return UnsafeCheckpointError(
        f"{path}: refusing to load this checkpoint: it contains objects outside the allowlist "
        f"and could run code when unpickled ({reason}). Only checkpoints written by cm3leon "
        "training can be loaded; there is no unsafe fallback."
    )


def _weights_only_load(source: str | Path | io.BytesIO, where: str | Path, *, mmap: bool) -> Any:
    with torch.serialization.safe_globals(list(allowed_globals())):
        try:
            return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as err:
            raise _refuse(where, err) from None
        except RuntimeError as err:
            if mmap and "mmap" in str(err):  # legacy (non-zip) format: plain weights-only load
                return _weights_only_load(source, where, mmap=False)
            raise UnsafeCheckpointError(f"{where}: not a readable torch checkpoint: {err}") from None


def check_metadata_file(path: str | Path) -> Any:
    """Unpickle a sharded checkpoint's ``.metadata`` with the restricted unpickler."""
    try:
        with open(path, "rb") as fh:
            return _MetadataUnpickler(fh).load()
    except pickle.UnpicklingError as err:
        raise _refuse(path, err) from None
    except (EOFError, ValueError, TypeError, AttributeError) as err:
        raise UnsafeCheckpointError(f"{path}: corrupt checkpoint metadata: {err}") from None


def _byte_item_slices(distcp: Path) -> list[tuple[int, int]]:
    """``(offset, length)`` of the pickled (non-tensor) items stored in one ``.distcp`` file."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    metadata = check_metadata_file(distcp.parent / ".metadata")
    byte_fqns = {fqn for fqn, md in metadata.state_dict_metadata.items() if isinstance(md, BytesStorageMetadata)}
    return [
        (int(info.offset), int(info.length))
        for index, info in (metadata.storage_data or {}).items()
        if index.fqn in byte_fqns and Path(str(info.relative_path)).name == distcp.name
    ]


def check_checkpoint(path: str | Path) -> None:
    """Verify that loading ``path`` cannot execute code; raise otherwise.

    ``path`` may be a monolithic ``.pt`` file (symlinks followed), a sharded checkpoint
    directory (``.metadata`` plus ``.distcp`` files) or one file of it.

    Raises:
        UnsafeCheckpointError: a refused global (named), or an unreadable file.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found" + (" (dangling symlink)" if path.is_symlink() else ""))
    if path.is_dir():
        metadata = path / ".metadata"
        if not metadata.is_file():
            raise UnsafeCheckpointError(f"{path}: directory is not a sharded checkpoint (no .metadata)")
        check_metadata_file(metadata)
        for shard in sorted(path.glob("*.distcp")):
            check_checkpoint(shard)
        return
    if path.name == ".metadata":
        check_metadata_file(path)
        return
    if path.suffix == ".distcp":
        with open(path, "rb") as fh:
            for offset, length in _byte_item_slices(path):
                fh.seek(offset)
                _weights_only_load(io.BytesIO(fh.read(length)), f"{path}@{offset}", mmap=False)
        return
    if composer_checkpoint.is_tar(str(path)) or composer_checkpoint.is_compressed_pt(str(path)):
        raise UnsafeCheckpointError(f"{path}: archived/compressed checkpoints are not supported; use .pt files")
    shown = f"{path} (-> {path.resolve()})" if path.is_symlink() else str(path)
    _weights_only_load(path, shown, mmap=True)


def validate_checkpoint(path: str | Path, specs: Sequence[tuple[int, int]] | None = None) -> bool:
    """Composer's ``CHECKPOINT_VALIDATION_FUNCTION``: called before every checkpoint read.

    Returns ``True`` for a safe file and raises :class:`UnsafeCheckpointError` otherwise
    (raising, rather than returning ``False``, keeps the reason in the message).
    """
    del specs  # the byte items to check are read from the checkpoint's own metadata
    check_checkpoint(path)
    return True


def install_checkpoint_guard() -> None:
    """Point Composer's checkpoint-validation hook at :func:`validate_checkpoint`.

    Raises:
        RuntimeError: another validation function is configured (it would replace ours).
    """
    current = os.environ.get(VALIDATION_ENV)
    if current not in (None, "", GUARD):
        raise RuntimeError(
            f"{VALIDATION_ENV}={current!r} is set; cm3leon needs {GUARD!r} there to load checkpoints safely"
        )
    os.environ[VALIDATION_ENV] = GUARD


def load_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """Load a monolithic Composer checkpoint safely (after :func:`check_checkpoint`)."""
    check_checkpoint(path)
    return _weights_only_load(Path(path), path, mmap=False)


def check_resume_checkpoint(save_folder: str | Path | None, load_path: str | None, autoresume: bool) -> Path | None:
    """Check, before the Trainer exists, the checkpoint the run is going to load.

    Returns the path that will be loaded (``latest`` target under ``save_folder`` when
    autoresuming and it exists, else ``load_path``), or ``None``.
    """
    candidates: list[Path] = []
    if autoresume and save_folder is not None:
        latest = Path(save_folder) / LATEST_FILENAME.format(rank=0)
        if latest.is_symlink() or latest.exists():
            candidates.append(latest)
    if not candidates and load_path:
        if "://" in load_path:
            return None  # downloaded by Composer; the validation hook checks it then
        candidates.append(Path(load_path))
    for path in candidates:
        check_checkpoint(path)
        return path.resolve()
    return None


def read_run_info(path: str | Path) -> dict[str, Any] | None:
    """The :class:`~cm3leon.core.train.callbacks.RunInfo` state stored in a checkpoint.

    Monolithic: checked and loaded weights-only with ``mmap`` (tensors are not read).
    Sharded (a ``torch.distributed.checkpoint`` directory): its RunInfo items, each read
    weights-only from its ``.distcp`` file (:func:`_sharded_run_info`).  ``None`` for a
    checkpoint written without ``RunInfo``.
    """
    path = Path(path)
    if path.is_dir():
        check_checkpoint(path)
        return _sharded_run_info(path)
    check_checkpoint(path)
    state = _weights_only_load(path, path, mmap=True).get("state", {})
    info = (state.get("callbacks") or {}).get(RUN_INFO_KEY)
    return dict(info) if isinstance(info, dict) else None


def _sharded_run_info(directory: Path) -> dict[str, Any] | None:
    """RunInfo as stored in a sharded checkpoint: DCP flattened it into one pickled item per
    leaf (``state.callbacks.RunInfo.fingerprint.optim.lr``, lists of dicts by index) and
    recorded each item's original path in ``metadata.planner_data``; rebuilt with DCP's own
    ``unflatten_state_dict``.  Empty dicts and lists store nothing, so they are absent."""
    from torch.distributed.checkpoint._nested_dict import unflatten_state_dict
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    metadata = check_metadata_file(directory / ".metadata")
    prefix = f"state.callbacks.{RUN_INFO_KEY}."
    paths = metadata.planner_data if isinstance(metadata.planner_data, dict) else {}
    flat: dict[str, Any] = {}
    for index, where in (metadata.storage_data or {}).items():
        fqn = index.fqn
        if not fqn.startswith(prefix) or not isinstance(metadata.state_dict_metadata.get(fqn), BytesStorageMetadata):
            continue
        if fqn not in paths:
            raise UnsafeCheckpointError(f"{directory}: no object path for {fqn} in .metadata")
        with open(directory / Path(str(where.relative_path)).name, "rb") as fh:
            fh.seek(int(where.offset))
            raw = fh.read(int(where.length))
        flat[fqn] = _weights_only_load(io.BytesIO(raw), f"{directory}: {fqn}", mmap=False)
    if not flat:
        return None
    nested = unflatten_state_dict(flat, {fqn: tuple(paths[fqn]) for fqn in flat})
    return dict(nested["state"]["callbacks"][RUN_INFO_KEY])


# ------------------------------------------------------------------ recovery
def _committed(folder: Path) -> dict[int, Path]:
    """Committed checkpoints of rank 0 under ``folder`` by batch (final names only)."""
    found: dict[int, Path] = {}
    for entry in folder.iterdir() if folder.is_dir() else ():
        match = _COMMITTED.match(entry.name)
        if match and (entry.is_file() or (entry / ".metadata").is_file()):
            found[int(match["batch"])] = entry
    return found


def _swing_latest(latest: Path, target: Path) -> None:
    """Point ``latest`` at ``target`` atomically (``symlink`` to a temporary name + ``os.replace``)."""
    tmp = latest.with_name(f".{latest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, latest.parent), tmp)
    os.replace(tmp, latest)  # atomic: `latest` is the old or the new link, never absent
    fsync_path(latest.parent)


def recover_save_folder(folder: str | Path, latest_name: str = LATEST_FILENAME.format(rank=0)) -> Path | None:
    """Bring a save folder left by a killed run back to "``latest`` names the newest commit".

    Removes ``.partial-*`` directories (saves killed before their rename: uncommitted) and
    a ``latest`` temporary link, then points ``latest`` at the committed checkpoint with
    the highest batch when it names an older one, a missing one, or does not exist (a
    kill between the rename and the ``latest`` swing).  Idempotent; call it on rank 0
    before anything reads ``latest``.

    Returns:
        The checkpoint ``latest`` names afterwards, or ``None`` when there is none.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for stale in [*folder.glob(f"{PARTIAL_PREFIX}*"), *folder.glob(f".{latest_name}.*.tmp")]:
        log.warning("removing %s left by an interrupted checkpoint save", stale)
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    committed = _committed(folder)
    latest = folder / latest_name
    if not committed:
        return None
    newest = committed[max(committed)]
    current = latest.resolve() if latest.is_symlink() and latest.exists() else None
    if current is not None and current.parent.resolve() == folder.resolve():
        match = _COMMITTED.match(current.name)
        if match and int(match["batch"]) >= max(committed):
            return current
    log.warning("%s named %s; %s is the newest committed checkpoint (a save was interrupted after "
                "its rename): pointing %s at it", latest, current or "nothing", newest.name, latest.name)
    _swing_latest(latest, newest)
    return newest.resolve()


# ------------------------------------------------------------------ saving
def _mid_epoch_rng_state(state: State) -> list[dict[str, Any]] | None:
    """The RNG states of a monolithic checkpoint just loaded mid-epoch with dataset resumption
    (the one case where Composer does not restore them), else ``None``."""
    path = Path(state.load_path) if state.load_path else None
    if (path is None or not path.is_file() or int(state.timestamp.batch_in_epoch) == 0
            or not state.dataset_resumption.get("train")):
        return None
    rng = _weights_only_load(path, path, mmap=True).get("rng")
    return rng if isinstance(rng, list) and rng else None


def _disk_full(err: BaseException) -> bool:
    """Whether ``err`` is, or was raised while handling, ENOSPC/EDQUOT (torch.save turns a full
    disk into ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``)."""
    seen: BaseException | None = err
    for _ in range(16):  # a bounded walk of the cause/context chain
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _fsync_tree(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        fsync_path(p)


class AtomicCheckpointSaver(CheckpointSaver):
    """Composer's ``CheckpointSaver`` with atomic files and an always-valid ``latest``.

    It subclasses (rather than wraps) ``CheckpointSaver`` because the Trainer finds the
    saver -- and with it the folder autoresume reads -- by ``isinstance``.  Only the save
    itself is replaced; intervals, rotation and the state dict are Composer's.

    Args:
        folder: local (or network-mounted) checkpoint directory; with ``remote``, the
            local staging folder of the object store.
        remote: object-store folder (``s3://bucket/run/checkpoints``) every committed
            checkpoint is uploaded to, ``latest`` pointer last
            (:mod:`cm3leon.core.train.object_store`); ``None``: local only.
        save_interval / num_checkpoints_to_keep / overwrite: as ``CheckpointSaver``
            (``num_checkpoints_to_keep`` rotates the local folder; the remote keeps all).
        pull: with ``remote``, download the newest remote checkpoint into ``folder`` at
            ``Event.INIT`` (before Composer's autoresume reads ``latest``); set it to the
            Trainer's ``autoresume``.
    """

    def __init__(self, folder: str | Path, *, remote: str | None = None, pull: bool = True,
                 save_interval: str | int | Callable[..., bool] = "1ep",
                 num_checkpoints_to_keep: int = -1, overwrite: bool = False) -> None:
        if "://" in str(folder):
            raise ValueError(f"checkpoint folder {folder!r}: give an object-store URL as `remote`, "
                             "with a local staging folder")
        self.remote = remote
        self.pull = pull
        self._remote_folder: Any = None
        super().__init__(
            folder=str(folder), filename=CHECKPOINT_FILENAME, remote_file_name=None,
            latest_filename=LATEST_FILENAME, latest_remote_file_name=LATEST_FILENAME,
            save_interval=save_interval, overwrite=overwrite, num_checkpoints_to_keep=num_checkpoints_to_keep,
        )

    def init(self, state: State, logger: Logger) -> None:
        # Event.INIT runs before Composer's autoresume reads `latest` (Trainer.__init__).
        super().init(state, logger)
        folder = format_name_with_dist(self.folder, state.run_name)
        if self.remote is not None and self.pull and dist.get_local_rank() == 0:
            from cm3leon.core.train.object_store import pull_newest_checkpoint

            pull_newest_checkpoint(self.remote, folder, partial_prefix=PARTIAL_PREFIX)
        if dist.get_global_rank() == 0:
            recover_save_folder(folder)
        dist.barrier()

    def after_load(self, state: State, logger: Logger) -> None:
        # Composer restores the checkpoint's RNG state only at an epoch boundary or while
        # spinning the dataloader; a mid-epoch resume of a StreamingDataset (which resumes
        # itself) starts from seed_all(seed) instead, so every random draw after the resume
        # (dropout, a stochastic algorithm, numpy/python randomness in the step) differed
        # from the uninterrupted run.  Restore it once the first batch is fetched (before the
        # step's callbacks and the forward pass; fetching it starts the dataset's iteration,
        # which the uninterrupted run did at the start of the epoch).
        self._rng_to_restore = _mid_epoch_rng_state(state)

    def after_dataloader(self, state: State, logger: Logger) -> None:
        if getattr(self, "_rng_to_restore", None) is not None:
            reproducibility.load_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def _reached(self, point: str, state: State, path: Path) -> None:
        """Called at each of :data:`SAVE_POINTS` of a save on rank 0 (``path``: the file or
        directory at that moment).  A no-op; the kill-point tests replace it to SIGKILL the
        process there (``tests/core/train/_kill_train.py``)."""

    def _save_checkpoint(self, state: State, logger: Logger) -> None:
        self.last_checkpoint_batch = state.timestamp.batch
        folder = Path(format_name_with_dist(self.folder, state.run_name))
        template = self.filename.format(state, keep_placeholders=True)
        final = Path(composer_checkpoint.get_save_filename(state, template))
        self.all_saved_checkpoints_to_timestamp[str(final)] = state.timestamp
        sharded = state.fsdp_sharded_state_dict_enabled

        partial = folder / f"{PARTIAL_PREFIX}ba{int(state.timestamp.batch)}"
        try:
            self._write_and_commit(state, template, final, partial, sharded)
        except (OSError, RuntimeError) as err:
            if not _disk_full(err):
                raise
            if dist.get_global_rank() == 0:
                shutil.rmtree(partial, ignore_errors=True)  # give the space back now
            latest = folder / LATEST_FILENAME.format(rank=dist.get_global_rank())
            raise OSError(errno.ENOSPC, f"No space left on device while saving checkpoint {final}: its partial "
                          f"write was removed and {latest} still names the newest complete checkpoint. Free space "
                          "(or lower checkpoint.num_checkpoints_to_keep) and rerun the same command to resume "
                          "from it") from err
        dist.barrier()
        self.symlink_count += 1
        if dist.get_global_rank() == 0 or sharded:
            self.saved_checkpoints.append(str(final))
            if self.num_checkpoints_to_keep >= 0:
                self._rotate_checkpoints(sharding_enabled=sharded)
        log.info("checkpoint saved: %s", final.parent if sharded else final)

    def _write_and_commit(self, state: State, template: str, final: Path, partial: Path, sharded: bool) -> None:
        # 1. write everything inside a hidden partial directory (same filesystem as `final`)
        if dist.get_global_rank() == 0:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            self._reached("before_write", state, partial)
        dist.barrier()
        saved = composer_checkpoint.save_checkpoint(
            state, filename=str(partial / Path(template).name), weights_only=self.weights_only,
            ignore_keys=self.ignore_keys,
        )
        # 2. rank 0 commits (fsync, then the one atomic rename), then swings `latest`.
        if dist.get_global_rank() == 0:
            src = Path(saved).parent if sharded else Path(saved)  # type: ignore[arg-type]
            target = final.parent if sharded else final
            self._reached("mid_write", state, src)
            _fsync_tree(src) if src.is_dir() else fsync_path(src)
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(src, target)  # the commit
            fsync_path(target.parent)
            shutil.rmtree(partial, ignore_errors=True)
            self._reached("before_latest", state, target)
            self._point_latest(state, target)
            self._reached("after_latest", state, target)
            self._upload(target)

    def _upload(self, target: Path) -> None:
        """Upload a committed checkpoint to ``remote`` (rank 0; synchronous, errors raise:
        a checkpoint silently missing from the object store is worse than a stopped run)."""
        if self.remote is None:
            return
        if self._remote_folder is None:
            from cm3leon.core.train.object_store import RemoteFolder

            self._remote_folder = RemoteFolder(self.remote)
        self._remote_folder.upload_checkpoint(target)

    def _point_latest(self, state: State, target: Path) -> None:
        if self.latest_filename is None or self.num_checkpoints_to_keep == 0:
            return
        _swing_latest(Path(self.latest_filename.format(state)), target)
