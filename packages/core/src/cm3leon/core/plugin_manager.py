"""Plugin loading: one :func:`get_plugin_manager` for the whole project.

Plugins are found through the ``cm3leon`` entry-point group.  The seven first-party
distributions register their built-ins there too, exactly like a third party.

Environment variables:

``CM3LEON_LOAD_PLUGINS``
    Comma-separated allowlist of *distribution* names (e.g.
    ``cm3leon-core,cm3leon-tasks,my-plugin``).  When set, entry points of any other
    distribution are not imported.  An empty value loads nothing.
``CM3LEON_TRACE_PLUGINS``
    When set to a non-empty value other than ``0``, every hook call (with its
    arguments and results) is written to stderr.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

import pluggy

from cm3leon.core import hookspecs
from cm3leon.core.registry import Registries, build_registries

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOAD_ENV",
    "TRACE_ENV",
    "PluginError",
    "PluginInfo",
    "get_plugin_manager",
    "get_registries",
    "plugin_infos",
    "registries_with",
    "reset_plugins",
]

ENTRY_POINT_GROUP = "cm3leon"
LOAD_ENV = "CM3LEON_LOAD_PLUGINS"
TRACE_ENV = "CM3LEON_TRACE_PLUGINS"

log = logging.getLogger(__name__)


class PluginError(RuntimeError):
    """A plugin could not be loaded or does not match the hook specifications."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    distribution: str
    version: str
    entry_point: str


def _allowlist() -> set[str] | None:
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    return {_normalise(part) for part in raw.split(",") if part.strip()}


def _normalise(dist_name: str) -> str:
    return dist_name.strip().lower().replace("_", "-").replace(".", "-")


def _iter_entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    points = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "<unknown>"
        key = (_normalise(dist), ep.name)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        points.append(ep)
    return sorted(points, key=lambda e: (_normalise(e.dist.name if e.dist else ""), e.name))


def _new_manager() -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    allow = _allowlist()
    for ep in _iter_entry_points():
        dist = ep.dist.name if ep.dist is not None else "<unknown>"
        version = ep.dist.version if ep.dist is not None else ""
        if allow is not None and _normalise(dist) not in allow:
            log.debug("skipping plugin %s from %s (not in %s)", ep.name, dist, LOAD_ENV)
            continue
        plugin_name = f"{dist}:{ep.name}"
        try:
            plugin = ep.load()
        except Exception as err:  # report which distribution is broken, then re-raise
            raise PluginError(
                f"cannot load plugin {ep.name!r} ({ep.value}) from distribution {dist!r}: {err}"
            ) from err
        try:
            pm.register(plugin, name=plugin_name)
        except (pluggy.PluginValidationError, ValueError) as err:
            raise PluginError(
                f"plugin {ep.name!r} from distribution {dist!r} is invalid: {err}"
            ) from err
        infos[plugin_name] = PluginInfo(plugin_name, dist, version, ep.value)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        plugin_name = pm.get_name(err.plugin) if err.plugin is not None else "?"
        info = infos.get(plugin_name or "")
        where = f" from distribution {info.distribution!r}" if info else ""
        raise PluginError(
            f"plugin {plugin_name!r}{where} implements a hook that does not exist: {err}. "
            "Hook names are listed in docs/hooks.md (all start with 'cm3leon_')."
        ) from err
    trace = os.environ.get(TRACE_ENV, "")
    if trace and trace != "0":
        pm.trace.root.setwriter(lambda message: sys.stderr.write(f"[cm3leon-plugins] {message}"))
        pm.enable_tracing()
    return pm, infos


@functools.lru_cache(maxsize=1)
def _cached() -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    return _new_manager()


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager with every allowed plugin loaded.

    Raises:
        PluginError: a plugin failed to import, has a hookimpl with a wrong signature,
            or implements a hook that has no specification (e.g. a misspelled name).
    """
    return _cached()[0]


def plugin_infos() -> dict[str, PluginInfo]:
    """Return plugin name -> :class:`PluginInfo` for every loaded plugin."""
    return dict(_cached()[1])


@functools.lru_cache(maxsize=1)
def _cached_registries() -> Registries:
    infos = {k: (v.distribution, v.version) for k, v in plugin_infos().items()}
    return build_registries(get_plugin_manager(), infos)


def get_registries() -> Registries:
    """Return the registries filled by all loaded plugins (cached per process).

    Raises:
        PluginError: see :func:`get_plugin_manager`.
        DuplicateComponentError: two plugins registered the same name.
    """
    return _cached_registries()


def reset_plugins() -> None:
    """Forget the cached plugin manager and registries (after installing a plugin, in tests)."""
    _cached.cache_clear()
    _cached_registries.cache_clear()
    importlib.invalidate_caches()


def registries_with(*plugins: Any, distribution: str = "<local>") -> Registries:
    """Registries of the loaded plugins plus ``plugins`` registered programmatically.

    Useful in tests and notebooks to try a plugin object without packaging it.
    """
    pm, infos = _new_manager()
    merged = {k: (v.distribution, v.version) for k, v in infos.items()}
    for i, plugin in enumerate(plugins):
        name = f"{distribution}:{getattr(plugin, '__name__', type(plugin).__name__)}:{i}"
        pm.register(plugin, name=name)
        merged[name] = (distribution, "")
    pm.check_pending()
    return build_registries(pm, merged)
