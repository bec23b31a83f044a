"""Plugin discovery, duplicate detection, hook validation, allowlist and tracing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cm3leon.core.config import ComponentConfig, ConfigError, build_component, load_config
from cm3leon.core.plugin_manager import (
    FIRST_PARTY as FIRST_PARTY_DISTRIBUTIONS,
)
from cm3leon.core.plugin_manager import (
    PluginError,
    PluginWarning,
    get_plugin_manager,
    get_registries,
    plugin_infos,
    plugin_warnings,
    registries_with,
)
from cm3leon.core.registry import (
    REGISTRY_KINDS,
    CommandSpec,
    DuplicateComponentError,
    FactoryImportError,
    MetricSpec,
    UnknownComponentError,
)
from tests.core.plugin_fixtures import make_distribution


@dataclass
class EvalCfg:
    metric: ComponentConfig = field(default_factory=ComponentConfig)

FIRST_PARTY = {
    "cm3leon-core",
    "cm3leon-world",
    "cm3leon-tokenizers",
    "cm3leon-retrieval",
    "cm3leon-decoding",
    "cm3leon-tasks",
    "cm3leon-eval",
}

METRIC_PLUGIN = """
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import MetricSpec


class Counter:
    def __init__(self, start=0):
        self.value = start


@hookimpl
def cm3leon_register_metrics():
    return [MetricSpec("{name}", Counter, "counts things")]
"""


def test_all_first_party_distributions_load(fresh_plugins) -> None:
    dists = {info.distribution for info in plugin_infos().values()}
    assert dists >= FIRST_PARTY
    # every plugin was registered and validated against the hookspecs
    assert len(get_plugin_manager().get_plugins()) >= len(FIRST_PARTY)


def test_every_registry_hook_has_a_spec(fresh_plugins) -> None:
    pm = get_plugin_manager()
    for hook_name in (kind.hook for kind in REGISTRY_KINDS):
        assert hasattr(pm.hook, hook_name), hook_name
        assert getattr(pm.hook, hook_name).spec is not None, hook_name


def test_a_new_kind_is_one_table_entry_plus_its_spec_and_hook(monkeypatch) -> None:
    """Registries, their lookup by name, all() and the hook folding derive from REGISTRY_KINDS."""
    import pluggy

    from cm3leon.core import hookspecs
    from cm3leon.core import registry as registry_module
    from cm3leon.core.hookspecs import PROJECT_NAME, hookimpl, hookspec
    from cm3leon.core.registry import ComponentSpec, RegistryKind, build_registries

    @dataclass(frozen=True)
    class WidgetSpec(ComponentSpec):
        """A made-up component kind."""

    class WidgetHooks:
        @hookspec
        def cm3leon_register_widgets(self) -> list[WidgetSpec]:  # type: ignore[empty-body]
            """Register widgets."""

    class WidgetPlugin:
        @hookimpl
        def cm3leon_register_widgets(self) -> list[WidgetSpec]:
            return [WidgetSpec("w1", dict, "a widget")]

    kinds = (*REGISTRY_KINDS, RegistryKind("widgets", WidgetSpec, "widget"))
    monkeypatch.setattr(registry_module, "REGISTRY_KINDS", kinds)
    fresh = pluggy.PluginManager(PROJECT_NAME)
    fresh.add_hookspecs(hookspecs)
    fresh.add_hookspecs(WidgetHooks)
    fresh.register(WidgetPlugin(), name="widgets")
    registries = build_registries(fresh, {"widgets": ("acme-widgets", "1.0")})
    assert [attr for attr, _ in registries.all()] == [k.attr for k in kinds]
    assert registries.widgets is registries["widgets"] and registries.widgets.names() == ["w1"]
    assert registries.widgets.registration("w1").distribution == "acme-widgets"
    with pytest.raises(UnknownComponentError, match="unknown widget 'w2'.*registered widget"):
        registries.widgets.get("w2")
    with pytest.raises(AttributeError, match=r"no registry 'widget'; registries: models, .*widgets"):
        registries.widget  # noqa: B018


def test_core_commands_registered_with_distribution(fresh_plugins) -> None:
    reg = get_registries().commands.registration("plugins")
    assert reg.distribution == "cm3leon-core"
    assert reg.version


def test_unknown_component_lists_known_names(fresh_plugins) -> None:
    with pytest.raises(UnknownComponentError, match=r"unknown command 'nope' \(at cmd\.name\).*plugins"):
        get_registries().commands.get("nope", where="cmd.name")


def test_third_party_distribution_discovered(tmp_path, monkeypatch, fresh_plugins) -> None:
    make_distribution(tmp_path, "acme-metrics", "acme_metrics", METRIC_PLUGIN.replace("{name}", "acme-count"))
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_plugins()
    reg = get_registries().metrics.registration("acme-count")
    assert reg.distribution == "acme-metrics"
    assert get_registries().metrics.build("acme-count", start=3).value == 3


def test_component_chosen_by_name_from_config(tmp_path, monkeypatch, fresh_plugins) -> None:
    make_distribution(tmp_path / "site", "acme-metrics", "acme_metrics", METRIC_PLUGIN.replace("{name}", "acme-count"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fresh_plugins()

    path = tmp_path / "eval.yaml"
    path.write_text("metric:\n  name: acme-count\n  options: {start: 7}\n")
    cfg = load_config(EvalCfg, path)
    assert build_component(get_registries().metrics, cfg.metric, where="metric").value == 7

    bad = load_config(EvalCfg, path, ["metric.options.stat=1"])
    with pytest.raises(ConfigError, match=r"metric\.options: unknown option\(s\) \['stat'\]"):
        build_component(get_registries().metrics, bad.metric, where="metric")
    other = load_config(EvalCfg, path, ["metric.name=acme-cnt"])
    with pytest.raises(ConfigError, match=r"unknown metric 'acme-cnt' \(at metric\.name\)"):
        build_component(get_registries().metrics, other.metric, where="metric")


def test_duplicate_name_names_both_distributions(tmp_path, monkeypatch, fresh_plugins) -> None:
    make_distribution(tmp_path, "acme-one", "acme_one", METRIC_PLUGIN.replace("{name}", "same"))
    make_distribution(tmp_path, "acme-two", "acme_two", METRIC_PLUGIN.replace("{name}", "same"))
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_plugins()
    with pytest.raises(DuplicateComponentError) as info:
        get_registries()
    message = str(info.value)
    assert "'acme-one'" in message and "'acme-two'" in message and "'same'" in message


def test_duplicate_of_builtin_name(fresh_plugins) -> None:
    from cm3leon.core.hookspecs import hookimpl

    class Clash:
        @hookimpl
        def cm3leon_register_commands(self):
            return [CommandSpec("plugins", "cm3leon.core.cli:plugins_command", "clash")]

    with pytest.raises(DuplicateComponentError, match="cm3leon-core.*<local>|<local>.*cm3leon-core"):
        registries_with(Clash())


def test_misspelled_hookimpl_is_an_error(tmp_path, monkeypatch, fresh_plugins) -> None:
    source = """
from cm3leon.core.hookspecs import hookimpl

@hookimpl
def cm3leon_register_taks():
    return []
"""
    make_distribution(tmp_path, "acme-typo", "acme_typo", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_plugins()
    with pytest.raises(PluginError, match=r"cm3leon_register_taks.*|acme-typo"):
        get_plugin_manager()
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    assert "acme-typo" in str(info.value) and "cm3leon_register_taks" in str(info.value)


def test_wrong_return_type_is_an_error(fresh_plugins) -> None:
    from cm3leon.core.hookspecs import hookimpl

    class Bad:
        @hookimpl
        def cm3leon_register_metrics(self):
            return [CommandSpec("x", "a:b", "not a metric")]

    with pytest.raises(TypeError, match="returned CommandSpec from the metric hook"):
        registries_with(Bad())


def test_broken_plugin_import_names_distribution_and_version(tmp_path, monkeypatch, fresh_plugins) -> None:
    make_distribution(tmp_path, "acme-broken", "acme_broken", "raise RuntimeError('boom')\n", version="2.7.1")
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_plugins()
    with pytest.raises(PluginError, match="distribution 'acme-broken' 2.7.1: boom"):
        get_plugin_manager()


RAISING_HOOK_PLUGIN = """
from cm3leon.core.hookspecs import hookimpl


@hookimpl
def cm3leon_register_metrics():
    raise ValueError("metric table missing")
"""


def test_plugin_hook_raising_names_distribution_and_version(tmp_path, monkeypatch, fresh_plugins) -> None:
    """An exception inside a plugin's registration hook names the distribution and its version."""
    make_distribution(tmp_path, "acme-hookfail", "acme_hookfail", RAISING_HOOK_PLUGIN, version="3.1.4")
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_plugins()
    with pytest.raises(PluginError) as info:
        get_registries()
    message = str(info.value)
    assert "cm3leon_register_metrics" in message and "'acme-hookfail' 3.1.4" in message
    assert "ValueError: metric table missing" in message
    assert isinstance(info.value.__cause__, ValueError)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    shown = _run_cli("plugins", "list", env=env)  # the command line prints it as one error line
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert f"Error: {message}" in shown.stderr.splitlines()


SENTINEL_PLUGIN = """
import os

with open(os.environ["ACME_SENTINEL"], "a") as handle:  # an import side effect
    handle.write("imported\\n")
""" + METRIC_PLUGIN.replace("{name}", "acme-side")


@pytest.fixture
def sentinel_plugin(tmp_path, monkeypatch, fresh_plugins) -> Path:
    """Distribution ``acme-side`` whose module appends to the returned file when imported."""
    sentinel = tmp_path / "imported.txt"
    make_distribution(tmp_path / "site", "acme-side", "acme_side", SENTINEL_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("ACME_SENTINEL", str(sentinel))
    sys.modules.pop("acme_side", None)
    yield sentinel
    sys.modules.pop("acme_side", None)  # each case imports its own fresh copy


@pytest.mark.parametrize("allowlist", ["", "acme-other", "-acme-side", "*,-acme-side", "acme-side,-acme_side"])
def test_unlisted_plugin_module_is_never_imported(allowlist, sentinel_plugin, monkeypatch, fresh_plugins) -> None:
    """Not allowed by CM3LEON_LOAD_PLUGINS, a plugin's module is not even imported."""
    import importlib.metadata

    monkeypatch.setenv("CM3LEON_LOAD_PLUGINS", allowlist)
    fresh_plugins()
    registries = get_registries()
    assert "acme-side" not in registries.metrics and "plugins" in registries.commands  # built-ins stay
    assert not sentinel_plugin.exists() and "acme_side" not in sys.modules
    assert "acme-side" not in {info.distribution for info in plugin_infos().values()}
    # Its metadata was enumerated (allowed): the entry point is visible without importing it.
    (point,) = [ep for ep in importlib.metadata.entry_points(group="cm3leon") if ep.name == "acme_side"]
    assert point.dist.name == "acme-side" and not sentinel_plugin.exists()


@pytest.mark.parametrize("allowlist", ["acme-side", "ACME_side", "*", None])
def test_listed_plugin_is_imported_and_registers(allowlist, sentinel_plugin, monkeypatch, fresh_plugins) -> None:
    """Named by the allowlist (or ``*``, or no allowlist at all), the plugin loads once."""
    if allowlist is not None:
        monkeypatch.setenv("CM3LEON_LOAD_PLUGINS", allowlist)
    fresh_plugins()
    registration = get_registries().metrics.registration("acme-side")
    assert (registration.distribution, registration.version) == ("acme-side", "0.1")
    assert get_registries().metrics.build("acme-side", start=2).value == 2
    assert sentinel_plugin.read_text() == "imported\n"


def test_allowlist_restricts_third_party_distributions_only(tmp_path, monkeypatch, fresh_plugins) -> None:
    make_distribution(tmp_path, "acme-metrics", "acme_metrics", METRIC_PLUGIN.replace("{name}", "acme-count"))
    make_distribution(tmp_path, "acme-other", "acme_other", METRIC_PLUGIN.replace("{name}", "acme-other"))
    monkeypatch.syspath_prepend(str(tmp_path))

    def loaded(value: str) -> set[str]:
        monkeypatch.setenv("CM3LEON_LOAD_PLUGINS", value)
        fresh_plugins()
        return {info.distribution for info in plugin_infos().values()}

    # The allowlist names third parties; the seven built-ins stay (core's commands too).
    assert loaded("acme_metrics") == FIRST_PARTY | {"acme-metrics"}
    assert "plugins" in get_registries().commands and "acme-count" in get_registries().metrics
    assert "acme-other" not in get_registries().metrics
    assert loaded("") == FIRST_PARTY  # empty: the built-ins only
    assert loaded("*") == FIRST_PARTY | {"acme-metrics", "acme-other"}
    # "-name" excludes, built-in or third party, and wins over "*".
    assert loaded("acme-metrics, -cm3leon-eval,-cm3leon_world") == FIRST_PARTY - {
        "cm3leon-eval", "cm3leon-world"} | {"acme-metrics"}  # fmt: skip
    assert loaded("*,-acme-other") == FIRST_PARTY | {"acme-metrics"}
    assert FIRST_PARTY_DISTRIBUTIONS == FIRST_PARTY


def test_allowlist_keeps_core_commands_in_the_cli(tmp_path) -> None:
    result = _run_cli("plugins", "list", "--json", env={"CM3LEON_LOAD_PLUGINS": "mydist"})
    assert result.returncode == 0, result.stderr
    assert {p["distribution"] for p in json.loads(result.stdout)["plugins"]} == FIRST_PARTY
    assert "mydist" in result.stderr  # an entry naming no installed plugin is reported
    dropped = _run_cli("world", "--help", env={"CM3LEON_LOAD_PLUGINS": "mydist,-cm3leon-world"})
    assert dropped.returncode != 0 and "No such command 'world'" in dropped.stderr


UNMARKED_PLUGIN = """
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import MetricSpec


def cm3leon_register_metrics():
    return [MetricSpec("acme-unmarked", dict, "never registered")]


@hookimpl
def cm3leon_register_commands():
    return []
"""


def test_hook_function_without_hookimpl_warns(tmp_path, monkeypatch, fresh_plugins) -> None:
    make_distribution(tmp_path, "acme-unmarked", "acme_unmarked", UNMARKED_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_plugins()
    with pytest.warns(PluginWarning) as caught:
        registries = get_registries()
    assert "acme-unmarked" not in registries.metrics  # pluggy ignores it: hence the warning
    (message,) = [str(w.message) for w in caught]
    assert "'acme_unmarked'" in message and "'cm3leon_register_metrics'" in message and "@hookimpl" in message
    assert "cm3leon_register_commands" not in message  # the decorated one is fine
    assert plugin_warnings() == [message]
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    listed = _run_cli("plugins", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "warning: cm3leon plugin module 'acme_unmarked'" in listed.stdout
    assert "cm3leon_register_metrics" in listed.stdout
    as_json = json.loads(_run_cli("plugins", "list", "--json", env=env).stdout)
    assert as_json["warnings"] == [message]


def test_unmarked_method_of_a_plugin_object_warns(fresh_plugins) -> None:
    class Half:
        def cm3leon_register_metrics(self):
            return [MetricSpec("half", dict)]

    with pytest.warns(PluginWarning, match=r"'Half'.*'cm3leon_register_metrics'.*not decorated with @hookimpl"):
        registries = registries_with(Half())
    assert "half" not in registries.metrics


TYPO_FACTORY_PLUGIN = """
from cm3leon.core.hookspecs import hookimpl
from cm3leon.core.registry import TaskSpec


@hookimpl
def cm3leon_register_tasks():
    return [TaskSpec("acme_task", "acme_typo_pkg.tsk:AcmeTask", "typo in the module", reader="acme_typo_pkg.task:read")]
"""


def test_typo_in_lazy_factory_names_plugin_string_and_error(tmp_path, monkeypatch, fresh_plugins) -> None:
    from click.testing import CliRunner

    from cm3leon.core.cli import cli

    make_distribution(tmp_path, "acme-typo-factory", "acme_typo_factory", TYPO_FACTORY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_plugins()
    spec = get_registries().tasks.get("acme_task")
    with pytest.raises(FactoryImportError) as info:
        spec.build()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("plugin distribution 'acme-typo-factory', task 'acme_task', factory: ")
    assert "'acme_typo_pkg.tsk:AcmeTask'" in message and "No module named 'acme_typo_pkg'" in message
    with pytest.raises(FactoryImportError, match=r"'acme-typo-factory', task 'acme_task', reader: .*acme_typo_pkg"):
        spec.resolve("reader")
    shown = CliRunner().invoke(cli, ["tasks", "show", "acme_task"])
    assert shown.exit_code == 1
    assert shown.output.splitlines() == [f"Error: {message}"]  # one line, no traceback


def test_factory_module_raising_on_import_is_one_line(tmp_path, monkeypatch) -> None:
    (tmp_path / "acme_raises.py").write_text("import json\nraise RuntimeError('bad\\nconfig')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = MetricSpec("m", "acme_raises:Metric")
    with pytest.raises(FactoryImportError, match=r"^metric 'm', factory: cannot import 'acme_raises' .*"
                       r"RuntimeError: bad config$"):  # fmt: skip
        spec.load()
    with pytest.raises(FactoryImportError, match="not of the form"):
        MetricSpec("m", "no_colon").load()


def test_metric_spec_validates_name() -> None:
    with pytest.raises(ValueError, match="non-empty word"):
        MetricSpec("two words", "a:b")


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cm3leon.core.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )


def test_trace_env_writes_hook_calls() -> None:
    result = _run_cli("plugins", "list", "--json", env={"CM3LEON_TRACE_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    assert "cm3leon_register_commands" in result.stderr
    assert json.loads(result.stdout)["components"]


def test_plugins_list_shows_every_first_party_distribution() -> None:
    result = _run_cli("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {p["distribution"] for p in data["plugins"]} >= FIRST_PARTY
    providers = {c["distribution"] for c in data["components"]}
    # every first-party package contributes at least one component
    missing = FIRST_PARTY - providers
    assert not missing, f"packages registering no component: {sorted(missing)}"


@pytest.mark.integration
def test_pip_installed_plugin_package(tmp_path: Path) -> None:
    """A real throwaway package, pip-installed, is discovered, usable and listed."""
    import shutil

    uv = shutil.which("uv")
    assert uv, "uv must be on PATH (the CI installs it)"
    pkg = tmp_path / "acme-pipplug"
    (pkg / "src" / "acme_pipplug").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "acme-pipplug"
version = "0.3.0"
dependencies = ["cm3leon-core"]

[project.entry-points.cm3leon]
acme = "acme_pipplug.plugin"

[tool.hatch.build.targets.wheel]
packages = ["src/acme_pipplug"]
"""
    )
    (pkg / "src" / "acme_pipplug" / "__init__.py").write_text("")
    (pkg / "src" / "acme_pipplug" / "plugin.py").write_text(METRIC_PLUGIN.replace("{name}", "acme-pip-count"))
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    install = subprocess.run(
        [uv, "pip", "install", "--python", sys.executable, "--no-deps", str(pkg)],
        capture_output=True, text=True, env=env, check=False,
    )
    assert install.returncode == 0, install.stderr
    try:
        listed = _run_cli("plugins", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = [c for c in json.loads(listed.stdout)["components"] if c["name"] == "acme-pip-count"]
        assert rows == [
            {
                "registry": "metrics",
                "name": "acme-pip-count",
                "distribution": "acme-pipplug",
                "version": "0.3.0",
                "description": "counts things",
            }
        ]
        table = _run_cli("plugins", "list", "--kind", "metrics")
        assert "acme-pip-count" in table.stdout and "acme-pipplug" in table.stdout
        code = (
            "from cm3leon.core.plugin_manager import get_registries;"
            "from cm3leon.core.config import ComponentConfig, build_component;"
            "m = build_component(get_registries().metrics, ComponentConfig('acme-pip-count', {'start': 5}), where='m');"
            "print(m.value)"
        )
        used = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert used.stdout.strip() == "5", used.stderr
    finally:
        subprocess.run(
            [uv, "pip", "uninstall", "--python", sys.executable, "acme-pipplug"],
            capture_output=True, text=True, env=env, check=False,
        )
