"""Generation through a registered generator runner, skipped when already done.

The protocols write a JSONL prompt file, build the typed config of the generator runner
(:func:`cm3leon.eval.protocols.config.generate_config`) and call the runner registered
under ``runner`` (default: cm3leon-decoding's ``generate``) through the runner registry, so
a plugin can swap the generator.  The contract of a generator runner is the one of
cm3leon-decoding's ``generate``: ``run(cfg, run_dir)`` reads the prompt file named by
``cfg.prompts`` and writes ``<run_dir>/samples/`` atomically (``COMPLETE`` marker), holding

* ``results.jsonl`` — one line per prompt: ``{"id", "output", "candidates": [{"rank",
  "text", "image" (path relative to samples/), "score", ...}]}`` (best first);
* ``manifest.json`` — ``{"prompts": [{"id", "text", "images"}]}`` for image outputs.

Layout of a generation directory::

    prompts.jsonl       the prompts (written before generating)
    samples/            the generator's output (complete, or absent)
    generation.json     fingerprint + summary, written last: the resume marker

**Resuming**: when ``samples/`` is complete and ``generation.json`` holds the same
fingerprint — the generator config, the prompt file's text, and the size and
modification time of every file the config or the prompts name (model export,
tokenizers, memory bank, prompt images) — generation is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cm3leon.core.config import ConfigError, config_to_yaml, load_config
from cm3leon.core.io import atomic_write_json, atomic_write_text, is_complete, read_json
from cm3leon.core.registry import resolve_object
from cm3leon.eval.formats import FormatError

__all__ = ["DEFAULT_GENERATOR", "Generation", "path_identity", "run_generator"]

log = logging.getLogger(__name__)

#: The generator runner registered by cm3leon-decoding.
DEFAULT_GENERATOR = "generate"
_MARKER = "generation.json"


@dataclass(frozen=True)
class Generation:
    """A finished generation.

    Attributes:
        samples: the ``samples/`` directory.
        rows: prompt id -> its ``results.jsonl`` line.
        manifest: ``samples/manifest.json`` (image outputs) or ``None``.
        summary: what the generator returned.
        reused: ``True`` when a previous generation was reused.
        seconds: time spent generating (0 when reused).
    """

    samples: Path
    rows: dict[str, dict[str, Any]]
    manifest: Path | None
    summary: dict[str, Any]
    reused: bool
    seconds: float

    def best(self, prompt_id: str) -> dict[str, Any]:
        """The first (best) candidate of ``prompt_id``."""
        row = self.rows.get(prompt_id)
        if row is None or not row.get("candidates"):
            raise FormatError(
                f"{self.samples}/results.jsonl: no candidates for prompt {prompt_id!r}"
            )
        return row["candidates"][0]

    def image_path(self, candidate: Mapping[str, Any]) -> Path:
        """Absolute path of an image candidate."""
        if not candidate.get("image"):
            raise FormatError(
                f"{self.samples}: candidate {dict(candidate).get('rank')} has no image"
            )
        return self.samples / str(candidate["image"])


def _candidate_paths(value: Any) -> Iterable[Path]:
    """Existing paths named by a config value (``NAME:DIR`` tokenizer strings included)."""
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _candidate_paths(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _candidate_paths(v)
    elif isinstance(value, str) and value:
        for text in (value, value.partition(":")[2]):
            if text and ("/" in text or "." in text) and Path(text).exists():
                yield Path(text)


def path_identity(paths: Iterable[Path]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of every file under ``paths`` (sorted, de-duplicated)."""
    files: set[Path] = set()
    for path in paths:
        if path.is_dir():
            files.update(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.add(path)
    out = []
    for f in sorted(files):
        st = f.stat()
        out.append([str(f), st.st_size, st.st_mtime_ns])
    return out


def _fingerprint(runner: str, typed: Any, prompts_text: str, inputs: Sequence[Path]) -> str:
    config = (
        config_to_yaml(typed)
        if dataclasses.is_dataclass(typed)
        else json.dumps(typed, sort_keys=True, default=str)
    )
    h = hashlib.sha256()
    for part in (runner, config, prompts_text, json.dumps(path_identity(inputs))):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _read_rows(samples: Path, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    path = samples / "results.jsonl"
    rows: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FormatError(f"{path}: the generator wrote no results.jsonl") from None
    for n, line in enumerate(lines, start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise FormatError(f"{path}:{n}: invalid JSON: {err}") from None
            rows[str(row.get("id"))] = row
    missing = [i for i in ids if i not in rows]
    if missing:
        raise FormatError(f"{path}: no results for {len(missing)} prompt(s): {missing[:10]}")
    return rows


def _as_mapping(config: Any) -> dict[str, Any]:
    """A typed generator config (dataclass) or a mapping, as a plain dict."""
    if dataclasses.is_dataclass(config):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]
    return dict(config)


def run_generator(
    entries: Sequence[Mapping[str, Any]],
    config: Any,
    directory: str | Path,
    *,
    runner: str = DEFAULT_GENERATOR,
    registries: Any = None,
    inputs: Sequence[str | Path] = (),
    force: bool = False,
) -> Generation:
    """Generate for ``entries`` (prompt-file lines) with ``config`` into ``directory``.

    Args:
        entries: JSON objects of the generator's prompt file, each with a unique ``id``.
        config: the generator runner's config (a typed ``GenerateConfig`` or a mapping);
            its ``prompts`` and ``output`` are filled in.
        directory: the generation directory (see the module docstring).
        runner: registered generator runner name.
        registries: where ``runner`` is looked up (default: the process-wide ones).
        inputs: further files whose change must invalidate a finished generation.
        force: generate even when a finished generation matches.

    Raises:
        ConfigError: an unknown runner or an invalid generator config (before generating).
        FormatError: duplicate prompt ids, or a generator output without a result per prompt.
    """
    directory, config = Path(directory), _as_mapping(config)
    ids = [str(e["id"]) for e in entries]
    if not ids:
        raise FormatError("no prompts to generate for")
    if len(set(ids)) != len(ids):
        raise FormatError(
            f"duplicate prompt ids: {sorted({i for i in ids if ids.count(i) > 1})[:10]}"
        )
    if registries is None:
        from cm3leon.eval.ablation.execute import active_registries

        registries = active_registries()
    spec = registries.runners.get(runner, where="generator")
    prompts = directory / "prompts.jsonl"
    data = {**config, "prompts": str(prompts), "output": str(directory / "samples")}
    try:
        typed = load_config(resolve_object(spec.schema), data=data) if spec.schema else data
    except ConfigError as err:
        raise ConfigError(str(err).replace("<config>", f"generator {runner!r} config", 1)) from None
    text = "".join(json.dumps(dict(e), sort_keys=True) + "\n" for e in entries)
    named = [
        *_candidate_paths(config),
        *_candidate_paths([dict(e) for e in entries]),
        *map(Path, inputs),
    ]
    fingerprint = _fingerprint(runner, typed, text, named)
    samples, marker = directory / "samples", directory / _MARKER
    previous = read_json(marker) if marker.is_file() else {}
    if not force and is_complete(samples) and previous.get("fingerprint") == fingerprint:
        log.info("%s: reusing the finished generation (%d prompts)", directory, len(ids))
        summary, reused, seconds = previous.get("summary", {}), True, 0.0
    else:
        marker.unlink(missing_ok=True)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(prompts, text)
        log.info("%s: generating for %d prompts with runner %r", directory, len(ids), runner)
        start = time.perf_counter()
        summary = dict(spec.load()(typed, directory) or {})
        seconds = time.perf_counter() - start
        if not is_complete(samples):
            raise FormatError(f"generator {runner!r} left no complete {samples} (COMPLETE marker)")
        atomic_write_json(
            marker,
            {"fingerprint": fingerprint, "runner": runner, "summary": summary, "seconds": seconds,
             "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        )  # fmt: skip
        reused = False
    manifest = samples / "manifest.json"
    return Generation(
        samples, _read_rows(samples, ids), manifest if manifest.is_file() else None,
        summary, reused, seconds,
    )  # fmt: skip
