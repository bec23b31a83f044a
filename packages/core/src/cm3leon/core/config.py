"""OmegaConf configs: YAML + dotted overrides validated against dataclass schemas.

Loading is deliberately strict and inert:

* YAML is parsed with ``yaml.safe_load`` semantics; python tags such as
  ``!!python/object/apply`` are rejected before anything is constructed.
* Parsing is bounded (:func:`parse_yaml`): a file over :data:`MAX_CONFIG_BYTES` is
  refused before it is read, and the document's node graph is measured *before* it is
  constructed -- a document whose aliases expand to more than :data:`MAX_CONFIG_NODES`
  nodes (the "billion laughs" alias bomb, which OmegaConf would copy out in full) is
  refused.  libyaml's C parser is used when PyYAML has it (100x faster on large scalars).
* The parsed mapping is merged onto ``OmegaConf.structured(schema)``: unknown or
  misspelled keys and values of the wrong type fail with the dotted path.
* Required keys are ``MISSING`` (``???``) in the schema; any left unset fails.
* Only OmegaConf's built-in resolvers exist; cm3leon registers none, and never an
  ``eval`` resolver.
* Values taken from the environment (``${oc.env:NAME}``, e.g. a token) are used but
  never written out: :func:`config_to_yaml` (so ``config validate --print``, every saved
  ``config.yaml``) and :func:`redact` (what training stores in checkpoints) put the
  interpolation ``${oc.env:NAME}`` back wherever the value appears, so a saved config
  still loads and resolves from the environment.

Example::

    cfg = load_config(TrainConfig, "configs/pretrain/tiny.yaml", ["optim.lr=3e-4"])
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cm3leon.core.io import atomic_write_text

if TYPE_CHECKING:
    from cm3leon.core.registry import Registry

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_NODES",
    "ComponentConfig",
    "ConfigError",
    "build_component",
    "apply_overrides",
    "config_to_yaml",
    "load_config",
    "load_yaml_file",
    "merge_config",
    "parse_yaml",
    "redact",
    "save_config",
    "schema_for",
]

T = TypeVar("T")

MAX_CONFIG_BYTES = 16 * 2**20
"""Largest config file read (16 MiB; the shipped configs are a few kB)."""
MAX_CONFIG_NODES = 1_000_000
"""Most YAML nodes a document may expand to, counting every alias as a full copy."""

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_ENV_INTERPOLATION = re.compile(r"\$\{oc\.env:\s*([^,}\s]+)")
# Environment values a loaded config used, longest first when redacting: value -> "${oc.env:NAME}".
_ENV_VALUES: dict[str, str] = {}
# Shorter values are not redacted: they are not secrets, and replacing them would corrupt
# unrelated text (a "1" in every number).
_MIN_REDACTED_LENGTH = 4


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and dotted key."""


@dataclass
class ComponentConfig:
    """A component chosen by registered name, with keyword options for its factory.

    YAML::

        retriever:
          name: clip
          options: {k: 2, min_score: 0.0}
    """

    name: str = "???"
    options: dict[str, Any] = field(default_factory=dict)


def build_component(registry: Registry[Any], cfg: ComponentConfig | Mapping[str, Any], *, where: str) -> Any:
    """Build ``cfg.name`` from ``registry`` with ``cfg.options``.

    Args:
        registry: e.g. ``get_registries().metrics``.
        cfg: a :class:`ComponentConfig` (or mapping with ``name``/``options``).
        where: dotted config path used in error messages (``"eval.metric"``).

    Raises:
        ConfigError: unknown name (lists the registered ones) or options the factory does
            not accept (names the option and ``where``).
    """
    from cm3leon.core.registry import UnknownComponentError

    name = cfg["name"] if isinstance(cfg, Mapping) else cfg.name
    options = dict((cfg.get("options") if isinstance(cfg, Mapping) else cfg.options) or {})
    try:
        spec = registry.get(name, where=f"{where}.name")
    except UnknownComponentError as err:
        raise ConfigError(str(err)) from None
    factory = spec.load()
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    ):
        unknown = sorted(set(options) - set(signature.parameters))
        if unknown:
            accepted = ", ".join(p for p in signature.parameters if p != "self") or "none"
            raise ConfigError(
                f"{where}.options: unknown option(s) {unknown} for {registry.kind} {name!r} "
                f"(accepted: {accepted})"
            )
    return factory(**options)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of ``root`` with every alias expanded, computed without expanding (memoised)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        if children_done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def parse_yaml(text: str, *, source: str = "<yaml>", max_nodes: int = MAX_CONFIG_NODES) -> Any:
    """Parse one YAML document safely and within bounds.

    Raises:
        ConfigError: invalid YAML (with line and column), python tags, or a document
            expanding to more than ``max_nodes`` nodes; the message names ``source``.
    """
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size > max_nodes:
            raise ConfigError(
                f"{source}: the YAML expands to {size:,} nodes (aliases counted in full), more than "
                f"the limit of {max_nodes:,}; refusing to build it (an alias bomb?)"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{source}{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """Parse a YAML mapping safely and within bounds, raising :class:`ConfigError` that names the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path}: config file is {size:,} bytes, more than the limit of {max_bytes:,}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file: {err}") from err
    data = parse_yaml(text, source=str(path))
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return dict(data)


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    msg = getattr(err, "msg", None) or str(err).split("\n")[0]
    return f"key {key!r}: {msg}" if key else msg


def merge_config(schema: type[T], data: Mapping[str, Any], *, source: str = "<config>") -> DictConfig:
    """Merge ``data`` onto the structured ``schema``; errors name ``source`` and the key."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"config schema must be a dataclass, got {schema!r}")
    base = OmegaConf.structured(schema)
    try:
        return OmegaConf.merge(base, OmegaConf.create(dict(data)))  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply dotted ``key=value`` overrides (values parsed as YAML scalars/lists)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        value = parse_yaml(raw, source=f"override {item!r}") if raw.strip() else ""
        # Structured nodes are in struct mode: an unknown key raises here with its
        # full dotted path; free-form ``dict`` fields accept new keys.
        try:
            OmegaConf.update(cfg, key, value, merge=True)
        except OmegaConfBaseException as err:
            raise ConfigError(f"override {item!r}: {_describe(err)}") from None
    return cfg


def load_config(
    schema: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    data: Mapping[str, Any] | None = None,
) -> T:
    """Load, validate and resolve a config.

    Args:
        schema: dataclass describing the config (``MISSING`` marks required keys).
        path: YAML file; may be ``None`` when ``data`` is given.
        overrides: dotted ``key=value`` strings applied after the file.
        data: an already-parsed mapping (used instead of, or merged after, ``path``).

    Returns:
        An instance of ``schema`` (nested dataclasses) with every interpolation resolved.

    Raises:
        ConfigError: malformed YAML, python tags, unknown keys, wrong types, missing
            required values or unresolved interpolations; the message names the file
            and the dotted key.
    """
    source = str(path) if path is not None else "<config>"
    loaded: dict[str, Any] = load_yaml_file(path) if path is not None else {}
    cfg = merge_config(schema, loaded, source=source)
    if data is not None:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(dict(data)))  # type: ignore[assignment]
        except OmegaConfBaseException as err:
            raise ConfigError(f"{source}: {_describe(err)}") from None
    try:
        cfg = apply_overrides(cfg, overrides)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None
    if missing:
        raise ConfigError(f"{source}: missing required value(s) for key(s): {', '.join(missing)}")
    _remember_env_values(OmegaConf.to_container(cfg, resolve=False))
    try:
        OmegaConf.resolve(cfg)
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None
    return obj  # type: ignore[return-value]


def _remember_env_values(node: Any) -> None:
    """Record the value of every ``${oc.env:NAME}`` the unresolved config ``node`` uses."""
    if isinstance(node, Mapping):
        for value in node.values():
            _remember_env_values(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _remember_env_values(value)
    elif isinstance(node, str):
        for name in _ENV_INTERPOLATION.findall(node):
            value = os.environ.get(name)
            if value is not None and len(value) >= _MIN_REDACTED_LENGTH:
                _ENV_VALUES[value] = "${oc.env:" + name + "}"


def redact(text: str) -> str:
    """``text`` with every environment value a loaded config used put back as ``${oc.env:NAME}``."""
    for value in sorted(_ENV_VALUES, key=len, reverse=True):
        if value in text:
            text = text.replace(value, _ENV_VALUES[value])
    return text


def config_to_yaml(cfg: Any) -> str:
    """Serialise a config (dataclass instance or DictConfig) to YAML, environment values redacted."""
    return redact(OmegaConf.to_yaml(OmegaConf.structured(cfg) if dataclasses.is_dataclass(cfg) else cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` as YAML atomically (the file is either complete or absent)."""
    return atomic_write_text(Path(path), config_to_yaml(cfg))


def schema_for(name: str) -> type:
    """Return the dataclass registered under ``name`` in the config-schema registry."""
    from cm3leon.core.plugin_manager import get_registries

    return get_registries().config_schemas.get(name).load()
