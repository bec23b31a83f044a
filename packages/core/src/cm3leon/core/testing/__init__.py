"""Conformance suites that plugin authors subclass in their own tests.

In the style of langchain's "standard tests": set two class attributes and
pytest collects the inherited checks::

    from cm3leon.core.testing import ComponentConformance

    class TestMyMetric(ComponentConformance):
        registry = "metrics"
        name = "my-metric"

Behavioural, kind-specific suites (they need pytest; imported on first use):

* :class:`TokenizerConformance` (``.tokenizers``): text round trip, ids/codes in range,
  image round trip, ``save`` + ``loader`` restore;
* :class:`DecodingConformance` (``.decoding``): processors ``(B, V) -> (B, V)``, finite,
  banned tokens stay banned, row-wise; selectors return allowed ids;
* :class:`MetricConformance` (``.metrics``): two ranks reduce to the one-process value;
  every state has a ``dist_reduce_fx``;
* :class:`SourceConformance` (``.sources``): yields lossless documents; a bad record
  raises naming it; ``skip_bad`` lists it.

SFT tasks have theirs in ``cm3leon.tasks.testing`` (``TaskConformance``).  The repository
runs :class:`ComponentConformance` and every suite over every registered component
(``tests/core/test_conformance.py``, ``tests/core/test_behaviour_conformance.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from cm3leon.core.plugin_manager import get_registries
from cm3leon.core.registry import ComponentSpec, Registration

__all__ = [
    "CommandConformance",
    "ComponentConformance",
    "DecodingConformance",
    "MetricConformance",
    "SourceConformance",
    "TokenizerConformance",
    "check_component",
]

_SUITES = {
    "DecodingConformance": "decoding",
    "MetricConformance": "metrics",
    "SourceConformance": "sources",
    "TokenizerConformance": "tokenizers",
}


def __getattr__(name: str) -> Any:
    # The behavioural suites import pytest: load them only when asked for.
    module = _SUITES.get(name)
    if module is None:
        raise AttributeError(f"module 'cm3leon.core.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"cm3leon.core.testing.{module}"), name)


def check_component(registry: str, name: str) -> Registration[Any]:
    """Run the generic checks on one component; return its registration.

    Raises:
        AssertionError: naming the component and the failed rule.
    """
    reg = get_registries()
    assert hasattr(reg, registry), f"no registry {registry!r}"
    entries = getattr(reg, registry)
    assert name in entries, f"{registry}: {name!r} is not registered (have {entries.names()})"
    registration = entries.registration(name)
    spec = registration.spec
    assert isinstance(spec, ComponentSpec)
    assert spec.description.strip(), f"{registry}:{name} has no description"
    assert registration.distribution and registration.distribution != "<unknown>"
    factory = spec.load()  # imports lazily referenced factories: they must exist
    assert callable(factory), f"{registry}:{name} factory {spec.factory!r} is not callable"
    for extra in ("loader", "reader", "options"):
        ref = getattr(spec, extra, None)
        if isinstance(ref, str):
            from cm3leon.core.registry import resolve_object

            assert resolve_object(ref) is not None, f"{registry}:{name}.{extra} {ref!r} does not resolve"
    return registration


class ComponentConformance:
    """Generic checks every registered component must pass."""

    registry: ClassVar[str]
    name: ClassVar[str]

    def test_component_conforms(self) -> None:
        check_component(self.registry, self.name)


class CommandConformance(ComponentConformance):
    """A ``cm3leon`` subcommand: builds a click command whose ``--help`` works."""

    registry: ClassVar[str] = "commands"

    def test_help_runs(self) -> None:
        import click
        from click.testing import CliRunner

        from cm3leon.core.cli import cli

        command = cli.get_command(click.Context(cli), self.name)
        assert isinstance(command, click.Command)
        result = CliRunner().invoke(cli, [self.name, "--help"])
        assert result.exit_code == 0, result.output
        assert (command.help or command.short_help or "").strip(), f"command {self.name!r} has no help"
