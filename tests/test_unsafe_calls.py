"""No unsafe deserialisation in shipped code (reliability list, test 25).

Every ``.py`` under ``packages/*/src`` and ``benchmarks/`` is parsed with :mod:`ast` and
each call is checked against these rules:

* ``torch.load`` must pass ``weights_only=True`` literally (a variable could be False);
* ``torch.jit.load`` is refused (a TorchScript archive carries code as well as tensors);
* ``pickle``/``cPickle``/``dill``/``cloudpickle``/``marshal`` ``load``/``loads``,
  ``joblib.load``, ``pandas.read_pickle`` and ``pickle.Unpickler`` are refused;
* ``np.load`` must not pass ``allow_pickle`` other than a literal ``False``;
* ``yaml.load``/``load_all`` need a ``Loader`` whose name contains ``Safe``
  (``yaml.safe_load``, ``CSafeLoader`` and ``cm3leon.core.config.parse_yaml`` are fine);
  ``yaml.unsafe_load``/``full_load`` and the ``Loader``/``UnsafeLoader``/``FullLoader``
  classes are refused;
* no ``except UnpicklingError`` handler may load again (the "retry unsafely" anti-pattern);
* the string ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` may not appear in code at all.

The sanctioned exceptions are listed in :data:`ALLOWED`, each with the reason; a second
test fails when an allowlisted place no longer exists, so the list cannot go stale.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = sorted(REPO.glob("packages/*/src")) + [REPO / "benchmarks"]

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal"}
UNSAFE_YAML = {"unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader", "UnsafeLoader",
               "FullLoader"}

# (file relative to the repo, enclosing function or class, rule): why it is safe.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("packages/core/src/cm3leon/core/train/composer_checkpoints.py", "_MetadataUnpickler", "pickle.Unpickler"):
        "the restricted unpickler of torch.distributed.checkpoint .metadata files: find_class "
        "admits only the listed data classes and torch dtypes, everything else is refused",
    ("packages/retrieval/src/cm3leon/retrieval/convert.py", "_load_trusted_torchscript", "torch.jit.load"):
        "OpenAI's CLIP archives exist only as TorchScript; the bytes handed to torch.jit.load are "
        "the bytes whose SHA-256 was just found among OpenAI's published files (open_clip's "
        "pretrained registry), so no other archive is ever deserialised",
}


@dataclass(frozen=True)
class Finding:
    path: str
    scope: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} (in {self.scope}): {self.rule}"


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain ('' otherwise)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


class _Aliases(ast.NodeVisitor):
    """Module aliases (``import numpy as np``) and names imported from modules (``from pickle import load``)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            self.names[a.asname or a.name] = f"{node.module}.{a.name}"


def _canonical(name: str, aliases: dict[str, str]) -> str:
    head, _, rest = name.partition(".")
    full = aliases.get(head, head)
    return f"{full}.{rest}" if rest else full


def _call_rule(name: str, call: ast.Call) -> str | None:
    """The rule a call to ``name`` (canonical dotted name) breaks, if any."""
    module, _, func = name.rpartition(".")
    if name == "torch.load" and not _is_const(_keyword(call, "weights_only"), True):
        return "torch.load without weights_only=True"
    if name == "torch.jit.load":
        return "torch.jit.load"
    if module.split(".")[0] in PICKLE_MODULES and func in ("load", "loads", "Unpickler"):
        return f"pickle.{func}" if func == "Unpickler" else f"{module}.{func}"
    if name in ("joblib.load", "pandas.read_pickle"):
        return name
    allow_pickle = _keyword(call, "allow_pickle")
    if name == "numpy.load" and allow_pickle is not None and not _is_const(allow_pickle, False):
        return "np.load with allow_pickle other than False"
    if module == "yaml" and func in ("load", "load_all"):
        loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        if loader is None or "Safe" not in _dotted(loader):
            return f"yaml.{func} without a safe Loader"
    if module == "yaml" and func in UNSAFE_YAML:
        return f"yaml.{func}"
    return None


def _loads_in(body: list[ast.stmt], aliases: dict[str, str]) -> bool:
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call):
                name = _canonical(_dotted(node.func), aliases)
                if name.rpartition(".")[2] in ("load", "loads", "_load") or name.endswith("Unpickler"):
                    return True
    return False


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str, aliases: dict[str, str]) -> None:
        self.path, self.aliases = path, aliases
        self.scope: list[str] = []
        self.findings: list[Finding] = []

    def _add(self, node: ast.AST, rule: str) -> None:
        self.findings.append(Finding(self.path, ".".join(self.scope) or "<module>", node.lineno, rule))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _scoped

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            rule = _call_rule(_canonical(_dotted(base), self.aliases), ast.Call(base, [], []))
            if rule:
                self.scope.append(node.name)
                self._add(node, rule)
                self.scope.pop()
        self._scoped(node)

    def visit_Call(self, node: ast.Call) -> None:
        rule = _call_rule(_canonical(_dotted(node.func), self.aliases), node)
        if rule:
            self._add(node, rule)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        caught = [node.type] if not isinstance(node.type, ast.Tuple) else list(node.type.elts)
        unpickling = any(_dotted(t).endswith("UnpicklingError") for t in caught if t is not None)
        if unpickling and _loads_in(node.body, self.aliases):
            self._add(node, "loads again after UnpicklingError (unsafe retry)")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # Docstrings included: shipped code has no reason to name the variable at all.
        if isinstance(node.value, str) and "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" in node.value:
            self._add(node, "mentions TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")


def scan_source(source: str, path: str = "<string>") -> list[Finding]:
    tree = ast.parse(source, filename=path)
    aliases = _Aliases()
    aliases.visit(tree)
    checker = _Checker(path, aliases.names)
    checker.visit(tree)
    return checker.findings


def scan_repo() -> list[Finding]:
    findings = []
    for root in ROOTS:
        for file in sorted(root.rglob("*.py")):
            findings += scan_source(file.read_text(encoding="utf-8"), file.relative_to(REPO).as_posix())
    return findings


def test_no_unsafe_deserialisation_in_shipped_code() -> None:
    found = [f for f in scan_repo() if (f.path, f.scope.split(".")[0], f.rule) not in ALLOWED]
    assert not found, "unsafe loading in shipped code:\n" + "\n".join(map(str, found))


def test_every_allowlisted_place_still_exists() -> None:
    present = {(f.path, f.scope.split(".")[0], f.rule) for f in scan_repo()}
    stale = sorted(set(ALLOWED) - present)
    assert not stale, f"allowlist entries that no longer match any code (remove them): {stale}"


def test_torch_force_no_weights_only_load_is_not_set() -> None:
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ, (
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns every torch.load(weights_only=True) into an unsafe load"
    )


def test_torch_is_recent_enough_for_cve_2026_24747() -> None:
    """The record the reliability list asks for: ``weights_only=True`` is only as safe as
    torch's unpickler, and the fix for CVE-2026-24747 needs torch >= 2.10.  Composer 0.32.1
    declares torch < 2.7.1; the root ``override-dependencies`` lift that pin."""
    import torch
    from packaging.version import Version

    assert Version(torch.__version__.split("+")[0]) >= Version("2.10"), torch.__version__


BAD = {
    "import torch\ntorch.load('x')": "torch.load without weights_only=True",
    "import torch\ntorch.load('x', weights_only=False)": "torch.load without weights_only=True",
    "import torch\ntorch.jit.load('x')": "torch.jit.load",
    "from torch.jit import load\nload('x')": "torch.jit.load",
    "import torch as t\nflag = True\nt.load('x', weights_only=flag)": "torch.load without weights_only=True",
    "from torch import load\nload('x')": "torch.load without weights_only=True",
    "import pickle\npickle.loads(b'')": "pickle.loads",
    "from pickle import load\nload(open('f', 'rb'))": "pickle.load",
    "import dill\ndill.load(f)": "dill.load",
    "import pickle\nclass U(pickle.Unpickler): pass": "pickle.Unpickler",
    "import numpy as np\nnp.load('x', allow_pickle=True)": "np.load with allow_pickle other than False",
    "import yaml\nyaml.load(s)": "yaml.load without a safe Loader",
    "import yaml\nyaml.load(s, Loader=yaml.Loader)": "yaml.load without a safe Loader",
    "import yaml\nyaml.unsafe_load(s)": "yaml.unsafe_load",
    "import yaml\nyaml.full_load(s)": "yaml.full_load",
    "import os\nos.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'": "mentions TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
    "import pickle, torch\ntry:\n    torch.load(p, weights_only=True)\nexcept pickle.UnpicklingError:\n"
    "    torch.load(p, weights_only=True)": "loads again after UnpicklingError (unsafe retry)",
}
GOOD = [
    "import torch\ntorch.load('x', map_location='cpu', weights_only=True)",
    "import numpy as np\nnp.load('x')\nnp.load('x', allow_pickle=False)",
    "import yaml\nyaml.safe_load(s)\nyaml.load(s, Loader=yaml.CSafeLoader)\nyaml.load(s, Loader=_SafeLoader)",
    "import pickle\ntry:\n    f()\nexcept pickle.UnpicklingError as err:\n    raise ValueError(err) from None",
]


@pytest.mark.parametrize("source", BAD, ids=range(len(BAD)))
def test_checker_flags_each_unsafe_pattern(source: str) -> None:
    rules = [f.rule for f in scan_source(source)]
    assert rules and set(rules) == {BAD[source]}


@pytest.mark.parametrize("source", GOOD)
def test_checker_accepts_safe_patterns(source: str) -> None:
    assert scan_source(source) == []
