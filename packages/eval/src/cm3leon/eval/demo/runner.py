"""Execute the demo plan: cached, resumable stages of public ``cm3leon`` commands.

For every stage (:mod:`cm3leon.eval.demo.stages`):

1. its **fingerprint** is the SHA-256 of its config files, its command lines and the
   fingerprints of the stages it depends on (run-directory prefix masked, so a moved run
   directory stays valid);
2. it is **skipped** when ``<out>/stages/<name>.json`` says ``complete`` with that
   fingerprint and every artefact still exists;
3. a record with **another fingerprint** means its config changed: the paths the stage
   owns are removed and it runs afresh (and so does everything downstream, whose
   fingerprints include this one);
4. otherwise it **runs or resumes**: finished steps (recorded one by one) are skipped, and
   the commands themselves resume their partial work (Composer autoresume, resumable
   world export, bank chunks).

Each step resolves its command through the command registry (``get_registries().commands``,
exactly what ``cm3leon <name>`` runs) and invokes it in this process with stdout, stderr
(file-descriptor level: C extensions and subprocesses too) and Python logging sent to
``<out>/logs/<stage>.log``; the terminal shows a rich progress display with the last line
the command printed.  ``<out>/commands.sh`` lists every command line in order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cm3leon.core.io import atomic_write_json, atomic_write_text, read_json
from cm3leon.eval.demo.stages import Stage, Step

__all__ = [
    "DemoError",
    "StageOutcome",
    "fingerprint",
    "invoke_command",
    "run_stages",
    "write_stage_configs",
]

log = logging.getLogger("cm3leon.eval.demo")

#: Bump when the meaning of a stage changes without its configs or commands changing.
PLAN_VERSION = 5  # 3: world splits drawn from scene content; 4: relevance rule, whole-segment masks, fitted rows; 5: one runner/command per protocol


class DemoError(RuntimeError):
    """A stage failed; the message names the stage, the command and its log file."""


@dataclass
class StageOutcome:
    """What happened to one stage in this invocation."""

    name: str
    status: str  # "cached" | "ran" | "resumed"
    seconds: float
    fingerprint: str
    steps_run: list[str] = field(default_factory=list)
    steps_skipped: list[str] = field(default_factory=list)


def _yaml(mapping: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(mapping, sort_keys=False, default_flow_style=False, allow_unicode=True)


def fingerprint(stage: Stage, upstream: dict[str, str], out: Path) -> str:
    """SHA-256 over the stage's configs, commands and upstream fingerprints."""
    mask = str(out)
    payload = {
        "version": PLAN_VERSION,
        "name": stage.name,
        "configs": {str(p).replace(mask, "<out>"): _yaml(c).replace(mask, "<out>")
                    for p, (_, c) in sorted(stage.configs.items())},
        "steps": [[s.name, *(a.replace(mask, "<out>") for a in s.argv)] for s in stage.steps],
        "upstream": {name: upstream[name] for name in stage.depends},
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_stage_configs(stage: Stage, out: Path) -> None:
    """Write the stage's config files (atomically), each headed by the command reading it."""
    for path, (schema, mapping) in stage.configs.items():
        users = [s.command_line for s in stage.steps if str(path) in s.argv]
        header = "".join(f"# {line}\n" for line in users)
        header += f"# Written by `cm3leon demo` (stage {stage.name!r}, schema {schema!r}).\n"
        atomic_write_text(path, header + _yaml(mapping))


def validate_stage_configs(stages: Sequence[Stage], registries: Any = None) -> None:
    """Check every stage config against its registered schema before anything runs.

    Raises:
        ConfigError: naming the demo stage, the schema and the dotted key.
    """
    from cm3leon.core.config import ConfigError, load_config
    from cm3leon.core.registry import resolve_object

    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    for stage in stages:
        for path, (schema, mapping) in stage.configs.items():
            if schema.startswith("runner:"):
                spec = registries.runners.get(schema.split(":", 1)[1], where=f"demo stage {stage.name}")
                cls = resolve_object(spec.schema)
            else:
                cls = registries.config_schemas.get(schema, where=f"demo stage {stage.name}").load()
            try:
                load_config(cls, data=mapping)
            except (ConfigError, ValueError) as err:
                raise ConfigError(
                    f"demo stage {stage.name!r} ({path.name}, schema {schema!r}): "
                    + str(err).replace("<config>: ", "")
                ) from None


# --------------------------------------------------------------------------- invocation


def invoke_command(argv: Sequence[str], registries: Any = None) -> None:
    """Run ``cm3leon <argv>`` in this process through the command registry.

    Raises:
        DemoError: the command reported an error or exited non-zero.
        KeyboardInterrupt: the user interrupted it.
    """
    import click

    if registries is None:
        from cm3leon.core.plugin_manager import get_registries

        registries = get_registries()
    spec = registries.commands.get(argv[0], where="demo step")
    target = spec.load()
    command = target if isinstance(target, click.Command) else target()
    line = "cm3leon " + " ".join(argv)
    try:
        command.main(args=list(argv[1:]), prog_name=f"cm3leon {argv[0]}", standalone_mode=False)
    except click.exceptions.Abort:
        raise KeyboardInterrupt from None
    except click.exceptions.Exit as err:
        if err.exit_code:
            raise DemoError(f"{line}: exited with status {err.exit_code}") from None
    except click.ClickException as err:
        raise DemoError(f"{line}: {err.format_message()}") from None
    except SystemExit as err:
        if err.code not in (0, None):
            raise DemoError(f"{line}: exited with status {err.code}") from None


@contextlib.contextmanager
def _captured(log_path: Path) -> Iterator[None]:
    """Send fds 1/2, ``sys.stdout``/``sys.stderr`` and root logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", buffering=1) as stream:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        root = logging.getLogger()
        console = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                   and not isinstance(h, logging.FileHandler)]  # fmt: skip
        old_streams = [h.setStream(stream) for h in console]  # e.g. `cm3leon -v`'s handler
        handler = None if console else logging.StreamHandler(stream)
        if handler is not None:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)
        old_level = root.level
        root.setLevel(min(old_level or logging.INFO, logging.INFO))
        try:
            for fd in (1, 2):
                os.dup2(stream.fileno(), fd)
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, dup in saved.items():
                os.dup2(dup, fd)
                os.close(dup)
            if handler is not None:
                root.removeHandler(handler)
            root.setLevel(old_level)
            for h, old in zip(console, old_streams, strict=True):
                h.setStream(old)


def last_line(log_path: Path, limit: int = 4096) -> str:
    """The last non-empty line (``\\r``-separated progress bars too) of a log file."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    for line in reversed(tail.replace("\r", "\n").split("\n")):
        if line.strip():
            return line.strip()
    return ""


# --------------------------------------------------------------------------- stages


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif _exists(path):
        path.unlink()


def _record_path(stages_dir: Path, name: str) -> Path:
    return stages_dir / f"{name}.json"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


Reporter = Callable[[str, Stage, Step | None, Path], None]


def _run_stage(stage: Stage, fp: str, out: Path, *, invoke: Callable[[Sequence[str]], None],
               report: Reporter) -> StageOutcome:  # fmt: skip
    stages_dir, logs = out / "stages", out / "logs"
    record_path = _record_path(stages_dir, stage.name)
    record = _read_record(record_path)
    start = time.monotonic()
    done_ok = record is not None and record.get("status") == "complete" and record.get("fingerprint") == fp
    if done_ok and all(_exists(p) for p in stage.artefacts.values()):
        report("cached", stage, None, logs / f"{stage.name}.log")
        return StageOutcome(stage.name, "cached", 0.0, fp)
    resumed = record is not None and record.get("fingerprint") == fp and not done_ok
    if not resumed:  # new, changed config, or artefacts gone: start clean
        for path in stage.owns:
            _remove(path)
        _remove(logs / f"{stage.name}.log")
    done = list(record.get("steps_done", [])) if resumed and record else []
    write_stage_configs(stage, out)
    log_path = logs / f"{stage.name}.log"
    entry = {"name": stage.name, "title": stage.title, "fingerprint": fp, "status": "running",
             "steps_done": done, "started": time.time(),
             "commands": [s.command_line for s in stage.steps]}  # fmt: skip
    atomic_write_json(record_path, entry)
    outcome = StageOutcome(stage.name, "resumed" if resumed else "ran", 0.0, fp)
    for step in stage.steps:
        if step.name in done and all(_exists(p) for p in step.outputs):
            outcome.steps_skipped.append(step.name)
            continue
        report("step", stage, step, log_path)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"\n$ {step.command_line}\n")
        t0 = time.monotonic()
        try:
            with _captured(log_path):
                invoke(step.argv)
        except DemoError as err:
            entry.update(status="failed", error=str(err))
            atomic_write_json(record_path, entry)
            raise DemoError(f"stage {stage.name!r} failed: {err}\n(log: {log_path})") from None
        except KeyboardInterrupt:
            entry.update(status="interrupted")
            atomic_write_json(record_path, entry)
            raise
        except Exception as err:
            entry.update(status="failed", error=f"{type(err).__name__}: {err}")
            atomic_write_json(record_path, entry)
            raise DemoError(
                f"stage {stage.name!r} failed in `{step.command_line}`: {type(err).__name__}: {err}\n"
                f"(log: {log_path})"
            ) from err
        missing = [str(p) for p in step.outputs if not _exists(p)]
        if missing:
            raise DemoError(f"stage {stage.name!r}: `{step.command_line}` did not write {missing} (log: {log_path})")
        done.append(step.name)
        entry["steps_done"] = done
        entry.setdefault("step_seconds", {})[step.name] = round(time.monotonic() - t0, 2)
        atomic_write_json(record_path, entry)
        outcome.steps_run.append(step.name)
    missing = {k: str(p) for k, p in stage.artefacts.items() if not _exists(p)}
    if missing:
        raise DemoError(f"stage {stage.name!r} finished without artefacts {missing} (log: {log_path})")
    outcome.seconds = time.monotonic() - start
    entry.update(status="complete", finished=time.time(), seconds=round(outcome.seconds, 2),
                 artefacts={k: str(p) for k, p in stage.artefacts.items()})  # fmt: skip
    atomic_write_json(record_path, entry)
    report("done", stage, None, log_path)
    return outcome


def run_stages(stages: Sequence[Stage], out: str | Path, *,
               invoke: Callable[[Sequence[str]], None] | None = None,
               stop_after: str | None = None,
               report: Reporter | None = None) -> list[StageOutcome]:  # fmt: skip
    """Run (or skip, or resume) ``stages`` in order under ``out``.

    Args:
        stages: the plan (:func:`cm3leon.eval.demo.stages.build_stages`).
        out: the run directory.
        invoke: runs one command line (default :func:`invoke_command`).
        stop_after: stop once this stage is complete.
        report: progress callback ``(event, stage, step, log_path)``.

    Raises:
        DemoError: a stage failed (earlier stages stay complete; re-running resumes).
        ValueError: ``stop_after`` names no stage.
    """
    out = Path(out)
    names = [s.name for s in stages]
    if stop_after is not None and stop_after not in names:
        raise ValueError(f"--stop-after: unknown stage {stop_after!r}; stages: {', '.join(names)}")
    for sub in ("stages", "logs", "configs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "commands.sh", commands_script(stages))
    fingerprints: dict[str, str] = {}
    outcomes = []
    for stage in stages:
        fingerprints[stage.name] = fingerprint(stage, fingerprints, out)
        outcomes.append(_run_stage(stage, fingerprints[stage.name], out, invoke=invoke or invoke_command,
                                   report=report or (lambda *a: None)))  # fmt: skip
        if stage.name == stop_after:
            break
    return outcomes


def commands_script(stages: Sequence[Stage]) -> str:
    """Every command of the plan, in order, as a shell script (what the demo runs)."""
    lines = ["#!/bin/sh", "# The commands `cm3leon demo` runs, in order (configs under configs/).", "set -e"]
    for stage in stages:
        lines.append(f"\n# {stage.name}: {stage.title}")
        lines.extend(step.command_line for step in stage.steps)
    return "\n".join(lines) + "\n"
