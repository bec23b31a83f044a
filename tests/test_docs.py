"""Docs stay true: every hook is documented with its exact signature and spec fields."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

from cm3leon.core import hookspecs
from cm3leon.core.registry import REGISTRY_HOOKS

ROOT = Path(__file__).resolve().parents[1]
HOOKS_MD = (ROOT / "docs" / "hooks.md").read_text()


def _hooks() -> dict[str, object]:
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("cm3leon_")
    }


def test_hooks_md_is_generated_from_the_hookspecs() -> None:
    from cm3leon.core.hooks_doc import render_hooks_markdown

    assert render_hooks_markdown() == HOOKS_MD, (
        "docs/hooks.md is stale: run `uv run cm3leon plugins hooks > docs/hooks.md`"
    )


def test_every_hook_documented_with_exact_signature() -> None:
    for name, fn in _hooks().items():
        signature = str(inspect.signature(fn)).replace("'", "")
        assert f"def {name}{signature}:" in HOOKS_MD, f"docs/hooks.md lacks `def {name}{signature}:`"


def test_no_documented_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^def (cm3leon_\w+)\(", HOOKS_MD, flags=re.M))
    assert documented == set(_hooks())


def test_every_registry_hook_is_a_hookspec_and_fields_documented() -> None:
    for hook_name, spec_type in REGISTRY_HOOKS.values():
        assert hook_name in _hooks()
        section = HOOKS_MD.split(f"## `{hook_name}`", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(spec_type):
            assert f"| `{f.name}` |" in section, f"{spec_type.__name__}.{f.name} missing under {hook_name}"


def test_readme_states_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme[:3000]
    assert "uv run cm3leon demo" in head
    assert "<!-- test-command -->" in head


def test_every_package_has_readme_and_changelog() -> None:
    for pkg in ("core", "tokenizers", "retrieval", "decoding", "tasks", "eval"):
        base = ROOT / "packages" / pkg
        readme = (base / "README.md").read_text()
        assert len(readme.splitlines()) > 10, f"packages/{pkg}/README.md is too thin"
        assert "0.1.0" in (base / "CHANGELOG.md").read_text()
