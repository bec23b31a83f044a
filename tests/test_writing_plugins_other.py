"""The plugin modules of docs/writing-plugins.md "Other kinds of plugins" work as written."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cm3leon.core.plugin_manager import registries_with

DOC = (Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md").read_text()
SECTION = DOC.split("## Other kinds of plugins", 1)[1]


def _module(marker: str) -> types.ModuleType:
    blocks = re.findall(r"```python\n(.*?)```", SECTION, flags=re.S)
    (source,) = [b for b in blocks if b.startswith(f"# {marker}")]
    module = types.ModuleType(marker.replace("/", "_").removesuffix(".py"))
    exec(compile(source, marker, "exec"), module.__dict__)
    return module


def test_decoding_processor_example() -> None:
    from cm3leon.decoding.processors import DecodeState

    registries = registries_with(_module("my_decoding/plugin.py"))
    processor = registries.decoding.get("no_repeat").build()
    logits = torch.zeros(2, 5)
    state = DecodeState(step=1, generated=torch.tensor([[12], [14]]), offset=10)
    out = processor(logits, state)
    assert out[0, 2] == float("-inf") and out[1, 4] == float("-inf")
    assert torch.isfinite(out).sum() == 8


def test_metric_example() -> None:
    registries = registries_with(_module("my_metrics/plugin.py"))
    metric = registries.metrics.build("exact_match")
    metric.update(["Two ", "red"], ["two", "blue"])
    assert float(metric.compute()) == 0.5


def test_command_example() -> None:
    module = _module("my_commands/plugin.py")
    registries = registries_with(module)
    command = registries.commands.get("hello").load()
    result = CliRunner().invoke(command, ["world"])
    assert result.output == "hello world\n"


# The page's conformance tests, run against its plugin modules (not installed here).
class TestDocDecodingConformance(_module("my_decoding/test_plugin.py").TestNoRepeat):  # type: ignore[misc]
    @pytest.fixture
    def registries(self):
        return registries_with(_module("my_decoding/plugin.py"))


class TestDocMetricConformance(_module("my_metrics/test_plugin.py").TestExactMatch):  # type: ignore[misc]
    @pytest.fixture
    def registries(self):
        return registries_with(_module("my_metrics/plugin.py"))
