"""Export the world to disk in the public dataset formats (``cm3leon world export``).

The output directory holds one sub-directory per format (see
:mod:`cm3leon.world.formats`) plus ``world.json`` (the manifest: seed, number of
scenes, sampler config, and what each format contains).

Atomic and idempotent: every format is written under a temporary sibling name and
renamed into place with a ``COMPLETE`` marker recording the world parameters
(:func:`cm3leon.core.io.atomic_directory`), so a format directory that exists is
complete.  Re-running with the same parameters skips finished formats (an interrupted
export resumes at the first unfinished one); re-running with different parameters is
an error unless ``overwrite`` is set.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cm3leon.core.io import (
    COMPLETE_MARKER,
    atomic_directory,
    atomic_write_json,
    is_complete,
    mark_complete,
    read_json,
)
from cm3leon.world.entities import EntityTail
from cm3leon.world.formats import WRITERS
from cm3leon.world.records import World
from cm3leon.world.scene import WorldConfig

__all__ = [
    "EXPORT_VERSION",
    "FORMATS",
    "MANIFEST",
    "export_world",
    "parse_formats",
    "read_manifest",
]

#: Bump when the exported files change for the same parameters.
EXPORT_VERSION = 1
MANIFEST = "world.json"
#: Formats selectable with ``--formats`` (``ground_truth`` is always written).
FORMATS: tuple[str, ...] = tuple(f for f in WRITERS if f != "ground_truth")


def parse_formats(spec: str | Sequence[str]) -> list[str]:
    """``"all"`` or a comma-separated list -> format names (``ground_truth`` first).

    Raises:
        ValueError: an unknown format name (the message lists the known ones).
    """
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names or names == ["all"]:
        names = list(FORMATS)
    unknown = [n for n in names if n not in WRITERS]
    if unknown:
        raise ValueError(f"unknown world format(s) {unknown}; known: all, {', '.join(FORMATS)}")
    return ["ground_truth"] + [n for n in dict.fromkeys(names) if n != "ground_truth"]


def _params(world: World, n: int) -> dict[str, Any]:
    params = {
        "version": EXPORT_VERSION,
        "seed": world.seed,
        "n": n,
        "config": dataclasses.asdict(world.config),
    }
    if world.tail is not None:  # absent without a tail: exports made before it stay valid
        params["tail"] = world.tail.params()
    return params


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The ``world.json`` manifest of an export directory."""
    return read_json(Path(out) / MANIFEST)


def _tqdm_progress(enabled: bool):
    from tqdm.auto import tqdm

    def progress(items: Iterable[int], name: str) -> Iterable[int]:
        items = list(items)
        return tqdm(items, desc=f"world {name}", unit="scene", disable=not enabled, leave=False)

    return progress


def export_world(
    out: str | Path,
    *,
    n: int,
    seed: int = 0,
    image_size: int = 32,
    formats: str | Sequence[str] = "all",
    overwrite: bool = False,
    progress: bool = True,
    config: WorldConfig | None = None,
    entity_docs: int = 0,
    entities: int = 300,
    entity_zipf: float = 1.0,
) -> dict[str, Any]:
    """Write ``n`` scenes of world ``seed`` in the requested public formats.

    Args:
        out: output directory (created).
        n: number of scenes (indices ``0 .. n-1``; each keeps its fixed split).
        seed: world seed.
        image_size: image side in pixels (ignored when ``config`` is given).
        formats: ``"all"``, a comma-separated string or a list of :data:`FORMATS`.
        overwrite: replace an export made with different parameters.
        progress: show a progress bar per format.
        config: full sampler config.
        entity_docs: long-tail entity documents (indices ``0 .. entity_docs-1``, each with
            its fixed split; :mod:`cm3leon.world.entities`) mixed into ``pretrain`` and
            listed by the ``entities`` format; 0 = scenes only.
        entities: size of the entity catalogue.
        entity_zipf: exponent of the entities' Zipfian frequency.

    Returns:
        The manifest (also written to ``out/world.json``), with ``written``/``skipped``
        format lists for this call.

    Raises:
        FileExistsError: ``out`` holds an export with other parameters and ``overwrite``
            is false.
        ValueError: bad ``n`` or an unknown format.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tail = _tail(seed, entity_docs, entities, entity_zipf)
    names = _formats(formats, tail)
    world = World(seed, config or WorldConfig(image_size=image_size), cache_size=n, tail=tail)
    params = _params(world, n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    existing = _existing_params(out)
    foreign = {name: p for name, p in existing.items() if p != params}
    if foreign:
        if not overwrite:
            name, other = next(iter(foreign.items()))
            raise FileExistsError(
                f"{out}: holds a world export made with other parameters ({name}: {other}, not {params}); "
                "pass overwrite=True (--overwrite) to replace it or choose another directory"
            )
        _clear(out)
        existing = {}
    bar = _tqdm_progress(progress)
    stats: dict[str, Any] = {
        name: read_json(out / name / COMPLETE_MARKER).get("stats", {}) for name in existing
    }
    written, skipped = [], []
    for name in names:
        if name in existing:
            skipped.append(name)
            continue
        _remove_partials(out, name)
        with atomic_directory(out / name, overwrite=True) as tmp:
            info = WRITERS[name](world, list(range(n)), tmp, bar)
            mark_complete(tmp, {"params": params, "format": name, "stats": info})
        stats[name] = info
        written.append(name)
        # The manifest always lists exactly the complete formats, even if a later one fails.
        atomic_write_json(out / MANIFEST, {"params": params, "formats": stats})
    manifest = {"params": params, "formats": stats}
    atomic_write_json(out / MANIFEST, manifest)
    return manifest | {"written": written, "skipped": skipped}


def _tail(seed: int, docs: int, entities: int, zipf: float) -> EntityTail | None:
    if docs < 0:
        raise ValueError(f"entity_docs must be >= 0, got {docs}")
    return EntityTail.build(seed, docs, entities, zipf) if docs else None


def _formats(formats: str | Sequence[str], tail: EntityTail | None) -> list[str]:
    """The formats to write: ``all`` leaves out ``entities`` without a tail; naming it is an error."""
    names = parse_formats(formats)
    if tail is None and "entities" in names:
        if formats != "all" and "all" not in formats:
            raise ValueError("the entities format needs a long tail: pass entity_docs > 0")
        names.remove("entities")
    return names


def _existing_params(out: Path) -> dict[str, Any]:
    """Format name -> world parameters recorded in its ``COMPLETE`` marker."""
    found = {}
    for name in WRITERS:
        if is_complete(out / name):
            found[name] = read_json(out / name / COMPLETE_MARKER).get("params")
    return found


def _clear(out: Path) -> None:
    """Remove every format directory this module writes, and the manifest."""
    for name in WRITERS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    (out / MANIFEST).unlink(missing_ok=True)


def _remove_partials(out: Path, name: str) -> None:
    """Delete temporary directories left by an interrupted export of format ``name``."""
    for stale in out.glob(f".{name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
