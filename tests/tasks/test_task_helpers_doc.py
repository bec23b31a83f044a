"""docs/writing-plugins.md documents the task helpers with their real signatures.

The page's "The helpers a task uses" block lists ``module.Name(params)`` lines; each must
equal the code's ``inspect.signature`` (annotations left out), and every parameter is
explained in the bullets that follow the block.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parents[2] / "docs" / "writing-plugins.md").read_text()
SECTION = DOC.split("### The helpers a task uses", 1)[1].split("\n### ", 1)[0]
(BLOCK,) = re.findall(r"```python\n(.*?)```", SECTION, flags=re.S)
LINES = [line for line in BLOCK.splitlines() if line.strip()]


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _plain_signature(obj: object) -> str:
    """``(a, b=1, *, c)``: the signature without annotations (as the page writes it)."""
    sig = inspect.signature(obj)  # type: ignore[arg-type]
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def test_the_documented_helpers_are_the_ones_a_task_author_needs() -> None:
    names = {line.split("(", 1)[0].rsplit(".", 1)[-1] for line in LINES}
    assert {"TemplateSet", "render", "entry_field", "require"} <= names


@pytest.mark.parametrize("line", LINES)
def test_documented_signature_matches_the_code(line: str) -> None:
    dotted, params = re.fullmatch(r"([\w.]+)(\(.*\))", line.strip()).groups()  # type: ignore[union-attr]
    assert params == _plain_signature(_resolve(dotted)), f"docs/writing-plugins.md: {line}"


@pytest.mark.parametrize("line", LINES)
def test_every_parameter_is_explained(line: str) -> None:
    name = line.split("(", 1)[0].rsplit(".", 1)[-1]
    params = [p for p in re.findall(r"(\w+)(?:=[^,)]*)?", line.split("(", 1)[1]) if p != "self"]
    bullet = next((b for b in SECTION.split("\n* ") if b.startswith(f"`{name}(")), None)
    explained = bullet or next(b for b in SECTION.split("\n* ") if f"`{name}`" in b)
    missing = [p for p in params if p not in explained]
    assert not missing, f"{name}: parameters {missing} are not explained on the page"
