"""Ablation files: a declarative ``base`` + ``matrix`` (+ ``run_name``) expanded into runs.

An ablation file (``configs/ablations/NAME.yaml``, schema :class:`AblationConfig`)::

    name: fid_sample_bias
    vars: {seed: 0}                 # free-form values for ${vars.seed} interpolations
    base:
      runner: fid_gaussian          # a registered runner (cm3leon plugins list --kind runners)
      config: {dim: 64, seed: "${vars.seed}"}   # a mapping, or a path to a YAML file
    matrix:
      num_samples: [100, 1000]      # axis -> values written at the key named like the axis
      dim:                          # explicit key: values written at `dim`
        key: dim
        values: [16, 64]
      spread:                       # label -> dotted-key overrides
        values:
          narrow: {scale: 0.9}
          wide: {scale: 1.5, shift: 0.1}
    run_name: "n${matrix.num_samples}-d${matrix.dim}-${matrix.spread}"
    report: {...}                   # tables and plots, see cm3leon.eval.ablation.report
    trackers: [{name: mlflow}]      # log every cell (cm3leon.eval.tracking); default: none

The runs are the Cartesian product of the axes (minus ``exclude`` entries).  ``run_name`` is
an OmegaConf interpolation resolved per run against the ablation file in which
``matrix.<axis>`` is replaced by that run's label (so ``${matrix.num_samples}`` is the run's
value; ``${name}`` and any other key of the file work too).  Without a ``run_name`` the
name is ``axis=label`` pairs joined by ``__``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cm3leon.core.config import ConfigError, load_config, load_yaml_file

__all__ = [
    "AblationConfig",
    "Axis",
    "BaseRunConfig",
    "PlotConfig",
    "ReportConfig",
    "Run",
    "TableConfig",
    "expand_runs",
    "load_ablation",
    "parse_axes",
]

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+,-]*$")
_AXIS_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class BaseRunConfig:
    """What every run starts from."""

    runner: str = MISSING
    config: Any = field(default_factory=dict)  # mapping, or path of a YAML file
    overrides: list[str] = field(default_factory=list)  # dotted key=value for every run


@dataclass
class TableConfig:
    """A pivot table: ``rows`` axis × ``columns`` axis, cells = result ``value``."""

    rows: str = MISSING
    columns: str = MISSING
    value: str = MISSING
    title: str = ""
    where: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlotConfig:
    """A line plot of result ``y`` against axis ``x``, one line per label of axis ``series``."""

    x: str = MISSING
    y: str = MISSING
    series: str | None = None
    title: str = ""
    where: dict[str, Any] = field(default_factory=dict)
    logx: bool = False
    logy: bool = False
    file: str | None = None


@dataclass
class ReportConfig:
    tables: list[TableConfig] = field(default_factory=list)
    plots: list[PlotConfig] = field(default_factory=list)
    precision: int = 2


@dataclass
class AblationConfig:
    """Schema of ``configs/ablations/*.yaml`` (registered as config schema ``ablation``)."""

    name: str = MISSING
    description: str = ""
    # Free-form values for ``${vars.x}`` interpolations in the rest of the file (paths of
    # the artefacts under test); override them on the command line: ``vars.demo=runs/d2``.
    vars: dict[str, Any] = field(default_factory=dict)
    base: BaseRunConfig = field(default_factory=BaseRunConfig)
    matrix: dict[str, Any] = field(default_factory=dict)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    run_name: str = ""
    output_dir: str = ""  # default runs/ablations/<name>
    report: ReportConfig = field(default_factory=ReportConfig)
    # Experiment trackers every finished cell is logged to ({name, options}, as a train
    # config's logging.trackers; cm3leon.eval.tracking): tensorboard, mlflow, wandb.
    trackers: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Axis:
    """One matrix axis: labels in file order, each with its dotted-key overrides."""

    name: str
    labels: tuple[Any, ...]
    overrides: tuple[dict[str, Any], ...]

    def index(self, label: Any) -> int:
        for i, lab in enumerate(self.labels):
            if lab == label or str(lab) == str(label):
                return i
        raise KeyError(f"axis {self.name!r} has no value {label!r}; values: {list(self.labels)}")


@dataclass(frozen=True)
class Run:
    """One cell of the matrix."""

    name: str
    index: int
    labels: dict[str, Any]  # axis -> label (scalar value or override-set name)
    overrides: dict[str, Any]  # dotted key -> value, all axes merged
    config: dict[str, Any]  # the run's config, overrides applied (unvalidated)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _parse_axis(name: str, raw: Any, where: str) -> Axis:
    if not _AXIS_OK.match(name):
        raise ConfigError(
            f"{where}: axis name {name!r} must be an identifier (use key: for dotted keys)"
        )
    key, values = name, raw
    if isinstance(raw, Mapping):
        extra = set(raw) - {"key", "values"}
        if extra or "values" not in raw:
            raise ConfigError(
                f"{where}: axis {name!r} must be a list of values or a mapping with 'values' "
                f"(and optional 'key'); got keys {sorted(raw)}"
            )
        key, values = raw.get("key") or name, raw["values"]
        if isinstance(values, Mapping):
            if "key" in raw:
                labels = tuple(values)
                return Axis(name, labels, tuple({key: v} for v in values.values()))
            sets = []
            for label, ov in values.items():
                if not isinstance(ov, Mapping) or not ov:
                    raise ConfigError(
                        f"{where}: axis {name!r} value {label!r} must be a mapping of dotted keys to "
                        "values (or give the axis a 'key')"
                    )
                sets.append(dict(ov))
            return Axis(name, tuple(values), tuple(sets))
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ConfigError(f"{where}: axis {name!r} needs a non-empty list of values")
    for v in values:
        if not _is_scalar(v):
            raise ConfigError(
                f"{where}: axis {name!r} value {v!r} is not a scalar; use 'values: {{label: {{key: value}}}}'"
            )
    if len({str(v) for v in values}) != len(values):
        raise ConfigError(f"{where}: axis {name!r} repeats a value: {list(values)}")
    return Axis(name, tuple(values), tuple({key: v} for v in values))


def parse_axes(matrix: Mapping[str, Any], *, where: str = "matrix") -> list[Axis]:
    """Normalise the ``matrix`` mapping into :class:`Axis` objects (file order)."""
    return [_parse_axis(str(name), raw, f"{where}.{name}") for name, raw in matrix.items()]


def _base_config(cfg: AblationConfig, source: Path | None) -> dict[str, Any]:
    raw = cfg.base.config
    if isinstance(raw, str):
        path = Path(raw)
        if not path.is_file() and source is not None and (source.parent / raw).is_file():
            path = source.parent / raw
        data = load_yaml_file(path)
    elif isinstance(raw, Mapping):
        data = dict(raw)
    else:
        raise ConfigError(
            f"{source}: base.config must be a mapping or a YAML path, got {type(raw).__name__}"
        )
    node = OmegaConf.create(data)
    from cm3leon.core.config import apply_overrides

    apply_overrides(node, cfg.base.overrides)
    return OmegaConf.to_container(node, resolve=False)  # type: ignore[return-value]


def _apply(config: Mapping[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    node = OmegaConf.create(dict(config))
    for key, value in overrides.items():
        try:
            OmegaConf.update(node, key, value, merge=True)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{where}: cannot set {key}={value!r}: {err}") from None
    try:
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"{where}: {err}") from None


def _resolve_name(cfg: AblationConfig, labels: Mapping[str, Any], where: str) -> str:
    if not cfg.run_name:
        name = "__".join(f"{axis}={label}" for axis, label in labels.items()) or "base"
    else:
        data = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=False)
        data["matrix"] = dict(labels)  # type: ignore[index]
        data["run_name"] = cfg.run_name  # type: ignore[index]
        try:
            name = str(OmegaConf.create(data).run_name)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{where}: run_name {cfg.run_name!r}: {err}") from None
    if not _NAME_OK.match(name):
        raise ConfigError(
            f"{where}: run name {name!r} (from run_name {cfg.run_name!r}) may only contain letters, "
            "digits and . _ = + , -"
        )
    return name


def _excluded(labels: Mapping[str, Any], exclude: Sequence[Mapping[str, Any]]) -> bool:
    return any(all(str(labels.get(k)) == str(v) for k, v in rule.items()) for rule in exclude)


def expand_runs(cfg: AblationConfig, *, source: Path | None = None) -> list[Run]:
    """All runs of ``cfg`` in matrix order (the last axis varies fastest).

    Raises:
        ConfigError: malformed axes, two axes writing the same key, a bad ``exclude`` entry,
            or run names that collide or contain unsafe characters.
    """
    where = str(source) if source is not None else cfg.name
    axes = parse_axes(cfg.matrix, where=f"{where}: matrix")
    known = {a.name for a in axes}
    for rule in cfg.exclude:
        bad = set(rule) - known
        if bad:
            raise ConfigError(
                f"{where}: exclude entry {dict(rule)} names unknown axes {sorted(bad)}"
            )
        for axis_name, label in rule.items():
            next(a for a in axes if a.name == axis_name).index(label)
    base = _base_config(cfg, source)
    runs: list[Run] = []
    names: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(range(len(a.labels)) for a in axes)):
        labels = {a.name: a.labels[i] for a, i in zip(axes, combo, strict=True)}
        if _excluded(labels, cfg.exclude):
            continue
        overrides: dict[str, Any] = {}
        for a, i in zip(axes, combo, strict=True):
            for key, value in a.overrides[i].items():
                if key in overrides:
                    raise ConfigError(
                        f"{where}: key {key!r} is set by more than one axis (axis {a.name!r})"
                    )
                overrides[key] = value
        name = _resolve_name(cfg, labels, where)
        if name in names:
            raise ConfigError(
                f"{where}: run name {name!r} is produced by both {names[name]} and {labels}; "
                "include every axis in run_name"
            )
        names[name] = labels
        runs.append(
            Run(name, len(runs), labels, overrides, _apply(base, overrides, f"{where}: run {name}"))
        )
    return runs


def load_ablation(path: str | Path, overrides: Sequence[str] = ()) -> AblationConfig:
    """Load and validate an ablation file (dotted ``overrides`` apply to the file itself)."""
    path = Path(path)
    raw = load_yaml_file(path)
    # run_name is resolved per run; keep the template (file or override) out of the
    # load-time resolution.
    template = raw.pop("run_name", "")
    rest = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "run_name":
            template = value
        else:
            rest.append(item)
    try:
        cfg = load_config(AblationConfig, data=raw, overrides=rest)
    except ConfigError as err:
        raise ConfigError(str(err).replace("<config>", str(path), 1)) from None
    cfg.run_name = str(template) if template is not None else ""
    if not _AXIS_OK.match(cfg.name.replace("-", "_")):
        raise ConfigError(f"{path}: name {cfg.name!r} must be a simple identifier")
    return cfg
