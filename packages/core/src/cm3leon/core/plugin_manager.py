"""Plugin loading: one :func:`get_plugin_manager` for the whole project.

Plugins are found through the ``cm3leon`` entry-point group.  The seven first-party
distributions register their built-ins there too, exactly like a third party.

Environment variables:

``CM3LEON_LOAD_PLUGINS``
    Comma-separated entries that restrict which *distributions* load.  Unset, every
    installed plugin loads.  Set, it is an allowlist of third-party distributions; the
    first-party built-ins (:data:`FIRST_PARTY`: ``cm3leon-core``, ``-world``,
    ``-tokenizers``, ``-retrieval``, ``-decoding``, ``-tasks``, ``-eval``) stay unless
    excluded:

    * ``my-plugin`` -- load this third-party distribution;
    * ``*`` -- load every third-party distribution;
    * ``-name`` -- do not load distribution ``name`` (built-in or third party; an
      exclusion wins over ``*``).

    So ``CM3LEON_LOAD_PLUGINS=mydist`` is the built-ins plus ``mydist``,
    ``CM3LEON_LOAD_PLUGINS=`` (empty) the built-ins only, ``*,-acme-broken`` everything
    but one plugin, and ``mydist,-cm3leon-eval`` drops the eval built-ins too.  Names
    compare case-insensitively with ``_``/``.`` read as ``-``; an entry that names no
    installed distribution is logged as a warning (a typo loads nothing).
``CM3LEON_TRACE_PLUGINS``
    When set to a non-empty value other than ``0``, every hook call (with its
    arguments and results) is written to stderr.

A plugin module (or object) with a function named like a hook (``cm3leon_...``) that is
not decorated with ``@hookimpl`` registers nothing for that hook; pluggy ignores it
silently, so loading emits a :class:`PluginWarning` naming the module and the function
(also listed by ``cm3leon plugins list`` and :func:`plugin_warnings`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import pluggy

from cm3leon.core import hookspecs
from cm3leon.core.registry import PluginError, Registries, build_registries

__all__ = [
    "ENTRY_POINT_GROUP",
    "FIRST_PARTY",
    "LOAD_ENV",
    "TRACE_ENV",
    "PluginError",
    "PluginInfo",
    "PluginWarning",
    "get_plugin_manager",
    "get_registries",
    "plugin_infos",
    "plugin_warnings",
    "registries_with",
    "reset_plugins",
]

ENTRY_POINT_GROUP = "cm3leon"
LOAD_ENV = "CM3LEON_LOAD_PLUGINS"
TRACE_ENV = "CM3LEON_TRACE_PLUGINS"
# The first-party distributions: CM3LEON_LOAD_PLUGINS keeps them unless excluded ("-name").
FIRST_PARTY = frozenset({
    "cm3leon-core", "cm3leon-world", "cm3leon-tokenizers", "cm3leon-retrieval",
    "cm3leon-decoding", "cm3leon-tasks", "cm3leon-eval",
})  # fmt: skip

log = logging.getLogger(__name__)


class PluginWarning(UserWarning):
    """A plugin loaded but looks wrong (a hook-named function without ``@hookimpl``)."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    distribution: str
    version: str
    entry_point: str


@dataclass(frozen=True)
class _LoadPolicy:
    """``CM3LEON_LOAD_PLUGINS`` parsed (module docstring): which distributions load."""

    allowed: frozenset[str]
    excluded: frozenset[str]
    every_third_party: bool

    @classmethod
    def from_env(cls) -> _LoadPolicy | None:
        raw = os.environ.get(LOAD_ENV)
        if raw is None:
            return None
        entries = [part.strip() for part in raw.split(",") if part.strip()]
        excluded = frozenset(_normalise(e[1:]) for e in entries if e.startswith("-"))
        allowed = frozenset(_normalise(e) for e in entries if not e.startswith("-") and e != "*")
        return cls(allowed, excluded, "*" in entries)

    def loads(self, dist: str) -> bool:
        name = _normalise(dist)
        if name in self.excluded:
            return False
        return name in FIRST_PARTY or self.every_third_party or name in self.allowed

    def warn_unknown(self, installed: set[str]) -> None:
        unknown = sorted((self.allowed | self.excluded) - installed)
        if unknown:
            log.warning("%s names distributions that provide no cm3leon plugin: %s (installed: %s)",
                        LOAD_ENV, ", ".join(unknown), ", ".join(sorted(installed)))  # fmt: skip


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


def _unmarked_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Names of ``plugin``'s functions named like a hook that pluggy will not call."""
    prefix = f"{hookspecs.PROJECT_NAME}_"
    names = []
    for name in dir(plugin):
        if not name.startswith(prefix) or not inspect.isroutine(getattr(plugin, name, None)):
            continue
        if pm.parse_hookimpl_opts(plugin, name) is None:  # no @hookimpl marker of this project
            names.append(name)
    return names


def _warn_unmarked(pm: pluggy.PluginManager, plugin: Any, where: str, messages: list[str]) -> None:
    """Warn (:class:`PluginWarning`) about each hook-named function without ``@hookimpl``."""
    for name in _unmarked_hooks(pm, plugin):
        message = (
            f"cm3leon plugin {where}: function {name!r} is not decorated with @hookimpl "
            "(from cm3leon.core.hookspecs import hookimpl), so it registers nothing"
        )
        messages.append(message)
        warnings.warn(message, PluginWarning, stacklevel=3)


def _new_manager() -> tuple[pluggy.PluginManager, dict[str, PluginInfo], list[str]]:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    messages: list[str] = []
    policy = _LoadPolicy.from_env()
    points = _iter_entry_points()
    if policy is not None:
        policy.warn_unknown({_normalise(ep.dist.name) for ep in points if ep.dist is not None})
    for ep in points:
        dist = ep.dist.name if ep.dist is not None else "<unknown>"
        version = ep.dist.version if ep.dist is not None else ""
        if policy is not None and not policy.loads(dist):
            log.debug("skipping plugin %s from %s (%s)", ep.name, dist, LOAD_ENV)
            continue
        plugin_name = f"{dist}:{ep.name}"
        try:
            plugin = ep.load()
        except Exception as err:  # report which distribution is broken, then re-raise
            raise PluginError(
                f"cannot load plugin {ep.name!r} ({ep.value}) from distribution {dist!r} {version}: {err}"
            ) from err
        try:
            pm.register(plugin, name=plugin_name)
        except (pluggy.PluginValidationError, ValueError) as err:
            raise PluginError(
                f"plugin {ep.name!r} from distribution {dist!r} {version} is invalid: {err}"
            ) from err
        infos[plugin_name] = PluginInfo(plugin_name, dist, version, ep.value)
        where = f"module {ep.value!r} (entry point {ep.name!r} of distribution {dist!r})"
        _warn_unmarked(pm, plugin, where, messages)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        plugin_name = pm.get_name(err.plugin) if err.plugin is not None else "?"
        info = infos.get(plugin_name or "")
        where = f" from distribution {info.distribution!r} {info.version}" if info else ""
        raise PluginError(
            f"plugin {plugin_name!r}{where} implements a hook that does not exist: {err}. "
            "Hook names are listed in docs/hooks.md (all start with 'cm3leon_')."
        ) from err
    trace = os.environ.get(TRACE_ENV, "")
    if trace and trace != "0":
        pm.trace.root.setwriter(lambda message: sys.stderr.write(f"[cm3leon-plugins] {message}"))
        pm.enable_tracing()
    return pm, infos, messages


@functools.lru_cache(maxsize=1)
def _cached() -> tuple[pluggy.PluginManager, dict[str, PluginInfo], list[str]]:
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


def plugin_warnings() -> list[str]:
    """Warnings raised while loading the plugins (e.g. a hook function without ``@hookimpl``)."""
    return list(_cached()[2])


@functools.lru_cache(maxsize=1)
def _cached_registries() -> Registries:
    infos = {k: (v.distribution, v.version) for k, v in plugin_infos().items()}
    return build_registries(get_plugin_manager(), infos)


def get_registries() -> Registries:
    """Return the registries filled by all loaded plugins (cached per process).

    Raises:
        PluginError: see :func:`get_plugin_manager`; also when a plugin's registration
            hook raises (the message names its distribution and version).
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
    pm, infos, messages = _new_manager()
    merged = {k: (v.distribution, v.version) for k, v in infos.items()}
    for i, plugin in enumerate(plugins):
        label = getattr(plugin, "__name__", type(plugin).__name__)
        name = f"{distribution}:{label}:{i}"
        pm.register(plugin, name=name)
        _warn_unmarked(pm, plugin, f"{label!r} (registered programmatically)", messages)
        merged[name] = (distribution, "")
    pm.check_pending()
    return build_registries(pm, merged)
