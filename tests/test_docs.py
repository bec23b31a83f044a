"""Docs stay true: every hook is documented with its exact signature and spec fields."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

from cm3leon.core import hookspecs
from cm3leon.core.registry import REGISTRY_KINDS

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


def test_registry_table_and_hookspecs_agree() -> None:
    """REGISTRY_KINDS is the source; hookspecs.py must declare exactly its hooks, typed with its specs."""
    table = {kind.hook: kind.spec for kind in REGISTRY_KINDS}
    assert set(table) == set(_hooks()), (
        f"hooks without a REGISTRY_KINDS entry: {sorted(set(_hooks()) - set(table))}; "
        f"table entries without a hookspec: {sorted(set(table) - set(_hooks()))}"
    )
    for hook_name, spec_type in table.items():
        fn = _hooks()[hook_name]
        assert not inspect.signature(fn).parameters, f"{hook_name} must take no arguments"
        returns = inspect.signature(fn).return_annotation
        assert returns == f"list[{spec_type.__name__}]", f"{hook_name} returns {returns}, table says {spec_type}"
        assert inspect.getdoc(fn), f"{hook_name} has no docstring"


def test_every_registry_kind_documented_with_its_fields() -> None:
    for kind in REGISTRY_KINDS:
        section = HOOKS_MD.split(f"## `{kind.hook}`", 1)[1].split("\n## ", 1)[0]
        assert f"`get_registries().{kind.attr}`" in section, f"docs/hooks.md: {kind.hook} names no registry"
        for f in dataclasses.fields(kind.spec):
            assert f"| `{f.name}` |" in section, f"{kind.spec.__name__}.{f.name} missing under {kind.hook}"


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
