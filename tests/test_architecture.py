"""The architecture as declared is the architecture as written.

* Every member imports only the members its ``pyproject.toml`` declares as runtime
  dependencies (imports anywhere in the file, ``TYPE_CHECKING`` blocks included, and
  lazy ``"cm3leon.<member>.module:attr"`` factory strings), and the declared graph has
  no cycle.
* ``docs/architecture.md`` draws exactly that graph, and every module it names exists.
* No function in ``packages/`` is longer than 80 lines.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_FUNCTION_LINES = 80

# A string that is exactly a module reference: "cm3leon.retrieval.bank" or
# "cm3leon.retrieval.bank:MemoryBank.load" (the registries' lazy factories).
_MODULE_STRING = re.compile(r"^cm3leon\.([a-z_]+)(\.[A-Za-z_]\w*)*(:[\w.]+)?$")


def members() -> list[str]:
    return sorted(p.name for p in PACKAGES.iterdir() if (p / "pyproject.toml").is_file())


_MEMBERS = frozenset(members())


def declared(member: str) -> set[str]:
    """The workspace members ``member`` declares as runtime dependencies (extras excluded)."""
    project = tomllib.loads((PACKAGES / member / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0] for dep in project.get("dependencies", [])}
    return {n.removeprefix("cm3leon-") for n in names if n.startswith("cm3leon-")}


def _sources(member: str) -> Iterator[Path]:
    yield from sorted((PACKAGES / member / "src" / "cm3leon" / member).rglob("*.py"))


def referenced(path: Path) -> Iterator[tuple[str, int]]:
    """``(member, line)`` for every reference of ``path`` to a ``cm3leon.<member>`` module."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "cm3leon" and len(parts) > 1:
                    yield parts[1], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "cm3leon":
                continue
            if len(parts) > 1:
                yield parts[1], node.lineno
            else:  # from cm3leon import world
                yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _MODULE_STRING.match(node.value)
            if match and match.group(1) in _MEMBERS:  # not e.g. the logger name "cm3leon.data"
                yield match.group(1), node.lineno


def graph() -> dict[str, set[str]]:
    return {m: declared(m) for m in members()}


def test_every_member_is_a_workspace_member_and_declares_only_members() -> None:
    names = set(members())
    assert {"core", "world", "tokenizers", "retrieval", "decoding", "tasks", "eval"} <= names
    for member, deps in graph().items():
        assert deps <= names, f"packages/{member}/pyproject.toml declares unknown members {sorted(deps - names)}"


@pytest.mark.parametrize("member", members())
def test_member_imports_only_declared_members(member: str) -> None:
    allowed = declared(member) | {member}
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: cm3leon.{other}"
        for path in _sources(member)
        for other, line in referenced(path)
        if other not in allowed
    ]
    assert not wrong, (
        f"cm3leon-{member} declares {sorted(declared(member))} but references undeclared members "
        "(declare the dependency in its pyproject.toml, or find the component by name in the "
        "registries):\n" + "\n".join(wrong)
    )


def test_reference_scan_sees_every_form(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import cm3leon.tasks.template\n"
        "from cm3leon import world\n"
        "if TYPE_CHECKING:\n"
        "    from cm3leon.decoding.config import GenerateConfig\n"
        "def f():\n"
        "    from cm3leon.eval import vqa\n"
        "    return 'cm3leon.retrieval.bank:MemoryBank', 'cm3leon.data', 'see cm3leon.tokenizers'\n"
    )
    assert sorted(referenced(source)) == [
        ("decoding", 5), ("eval", 7), ("retrieval", 8), ("tasks", 2), ("world", 3),
    ]


def test_declared_graph_is_acyclic() -> None:
    deps = graph()
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"dependency cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for dep in sorted(deps[node]):
            visit(dep, (*path, node))
        done.add(node)

    for member in deps:
        visit(member, ())


def test_core_depends_on_no_member() -> None:
    assert declared("core") == set()


def drawn_graph() -> dict[str, set[str]]:
    """The table between the ``dependency-graph`` markers of docs/architecture.md."""
    text = ARCHITECTURE.read_text()
    match = re.search(r"<!-- dependency-graph -->\n```\n(.*?)```", text, re.S)
    assert match, "docs/architecture.md has no ```-block after <!-- dependency-graph -->"
    drawn = {}
    for line in match.group(1).splitlines():
        if "<-" not in line:
            continue
        member, _, deps = line.partition("<-")
        deps = deps.split("#")[0].strip()
        drawn[member.strip()] = set() if deps in ("", "-") else {d.strip() for d in deps.split(",")}
    return drawn


def test_architecture_doc_draws_the_declared_graph() -> None:
    assert drawn_graph() == graph()


# ------------------------------------------------------------- named modules exist
_DOTTED = re.compile(
    r"(?<![\w./-])((?:cm3leon\.)?(?:core|world|tokenizers|retrieval|decoding|tasks|eval)(?:\.[A-Za-z_]\w*)+)"
)


def _resolves(dotted: str) -> bool:
    """``cm3leon.a.b.c``: the longest module prefix exists and the rest is defined in it."""
    parts = dotted.removeprefix("cm3leon.").split(".")
    src = PACKAGES / parts[0] / "src" / "cm3leon"
    for cut in range(len(parts), 0, -1):
        base = src.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            rest = parts[cut:]
            if not rest:
                return True
            return re.search(rf"^\s*(class|def)\s+{rest[0]}\b|^{rest[0]}\b\s*[:=]", module.read_text(), re.M) is not None
    return False


def test_every_module_the_architecture_doc_names_exists() -> None:
    named = sorted(set(_DOTTED.findall(ARCHITECTURE.read_text())))
    assert named, "the pattern found no module names in docs/architecture.md"
    missing = [name for name in named if not _resolves(name)]
    assert not missing, f"docs/architecture.md names modules or attributes that do not exist: {missing}"


def test_resolver_rejects_what_does_not_exist() -> None:
    assert _resolves("cm3leon.core.serialize.fit_example")
    assert _resolves("core.objective")
    assert not _resolves("eval.ablate")
    assert not _resolves("core.serialize.no_such_function")


# ------------------------------------------------------------- function length
def long_functions(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)"


def test_no_function_is_longer_than_80_lines() -> None:
    found = [hit for path in sorted(PACKAGES.rglob("*.py")) for hit in long_functions(path)]
    assert not found, "split these functions:\n" + "\n".join(found)
