"""The package's structure: no import cycle, no arrow from a lower layer to a higher one.

Run it alone with ``pytest tests/test_architecture.py`` (docs/architecture.md). It reads the
source with :mod:`ast` and imports nothing from auditkit, so it takes well under a second.

What counts as an import of module A by module B (an *arrow* B -> A):

* ``import auditkit.a`` and ``from auditkit.a import x`` (relative forms resolved); when ``x`` is
  itself a module (``from auditkit.attacks import text``), the arrow goes to ``auditkit.attacks.text``;
* **top-level** arrows run when B is imported: statements in the module body, including those
  nested in module-level ``if``/``try``/``with``/``class`` bodies, but not ``if TYPE_CHECKING:``
  blocks (never executed);
* **deferred** arrows run only when a function of B is called: imports inside a ``def`` or
  ``lambda``, and imports by string literal (``importlib.import_module("auditkit.a")``,
  ``__import__("auditkit.a")``), which a grep for ``import`` would miss.

The implicit import of a parent package (``auditkit.zoo.models`` runs ``auditkit/zoo/__init__``)
is not counted: a package ``__init__`` may re-export its submodules.

Rules:

1. no cycle among top-level arrows (Python would hand out half-initialised modules);
2. every arrow, top-level or deferred, goes to the same or a lower layer (``LAYERS``), except the
   few declared, documented ones in ``DECLARED``;
3. the check registry (``auditkit.checks``) imports no check module; the list of built-in checks
   (``auditkit.builtin_checks``) sits above it;
4. checks (``auditkit/*/check.py``, ``auditkit/performance.py``) and ``auditkit/defenses/*`` never
   import the zoo (``auditkit.zoo*``) except through ``DECLARED``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "auditkit"

# Lower layers first. A module belongs to the first layer one of whose prefixes it matches
# (a prefix matches the module itself and its submodules).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # Leaves: typed results, their summary and verdict, user errors, statistics, file helpers.
    # ``auditkit`` itself only holds __version__ and lazy exports (no static import; rule below).
    ("foundation", ("auditkit.errors", "auditkit.results", "auditkit.sections", "auditkit.summary",
                    "auditkit.verdict", "auditkit.stats", "auditkit.files", "auditkit.metrics",
                    "auditkit.progress", "auditkit.distributed", "auditkit.resources")),
    ("card", ("auditkit.card", "auditkit.safety")),
    # What goes into a scan: data, registered architectures, the training loop, safe loading,
    # card inference.
    ("inputs", ("auditkit.data", "auditkit.zoo.models", "auditkit.training", "auditkit.loading",
                "auditkit.inference")),
    # The check registry (a leaf: it imports no check) and the algorithms checks are made of.
    ("algorithms", ("auditkit.checks", "auditkit.explain.methods", "auditkit.explain.quality",
                    "auditkit.attacks", "auditkit.defenses", "auditkit.generative.metrics",
                    "auditkit.baselines.models", "auditkit.baselines.compare")),
    # Check modules: each registers its checks with the registry.
    ("checks", ("auditkit.performance", "auditkit.explain.check", "auditkit.generative.check",
                "auditkit.attacks.check", "auditkit.defenses.check", "auditkit.baselines.check")),
    # The list of built-in checks, and the zoo (recipes train through the defenses' trainers).
    ("assembly", ("auditkit.builtin_checks", "auditkit.zoo", "auditkit.explain", "auditkit.generative",
                  "auditkit.baselines")),
    ("scan", ("auditkit.scanning",)),
    ("consumers", ("auditkit.report", "auditkit.policy")),
    ("apps", ("auditkit.dashboard", "auditkit.dashboard_app", "auditkit.cli")),
]

CHECK_MODULES = LAYERS[[name for name, _ in LAYERS].index("checks")][1]

# Arrows that break the layer rule on purpose, each with the reason (docs/architecture.md
# lists them). Keep this list short: a new entry needs a reason a reviewer accepts.
DECLARED: dict[tuple[str, str], str] = {
    ("auditkit.defenses.purification", "auditkit.zoo"):
        "defense-gan without a generator named (defense-gan=PATH) uses the zoo's gan-digits: "
        "purification.default_generator() is the one place defenses read the zoo",
    ("auditkit.generative.check", "auditkit.zoo"):
        "a GAN's samples are judged by the zoo classifier of its reference dataset "
        "(generative.check.JUDGES: digits -> cnn-digits)",
}


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    deferred: bool
    line: int

    def __str__(self) -> str:
        kind = "deferred" if self.deferred else "top-level"
        return f"{self.source} -> {self.target} ({kind}, {_path(self.source)}:{self.line})"


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module under auditkit/."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _path(module: str) -> str:
    return str(MODULES[module].relative_to(PACKAGE.parent))


def _resolve(module: str, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    base = module.split(".")
    if MODULES[module].name != "__init__.py":
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _string_import(node: ast.Call) -> str | None:
    """``importlib.import_module("auditkit.x")`` / ``__import__("auditkit.x")`` with a literal."""
    name = ast.unparse(node.func)
    if name in ("__import__", "importlib.import_module", "import_module") and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def arrows() -> list[Arrow]:
    """Every arrow between auditkit modules (see the module docstring for what counts)."""
    found: list[Arrow] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

        def add(target: str | None, deferred: bool, line: int) -> None:
            if target and (target == "auditkit" or target.startswith("auditkit.")):
                while target not in MODULES:  # "auditkit.zoo.get_model" -> "auditkit.zoo"
                    target = target.rsplit(".", 1)[0]
                found.append(Arrow(module, target, deferred, line))

        def visit(node: ast.AST, deferred: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    for sub in child.orelse:
                        visit(sub, deferred)
                    continue
                inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        add(alias.name, inner, child.lineno)
                elif isinstance(child, ast.ImportFrom):
                    base = _resolve(module, child)
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        add(sub if sub in MODULES else base, inner, child.lineno)
                elif isinstance(child, ast.Call):
                    add(_string_import(child), True, child.lineno)
                visit(child, inner)

        visit(tree, False)
    return found


ARROWS = sorted(set(arrows()), key=str)


def layer_of(module: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                # the longest prefix wins: auditkit.attacks.check is a check, not an algorithm
                if best is None or len(p) > best[1]:
                    best = (rank, len(p))
    if best is None:
        raise AssertionError(f"{module} ({_path(module)}) is in no layer: add it to LAYERS in {__file__}")
    return best[0]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-arrow), Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_the_walk_sees_known_arrows() -> None:
    """Guard against a walker that finds nothing: a few arrows that must exist are found."""
    pairs = {(a.source, a.target, a.deferred) for a in ARROWS}
    assert ("auditkit.results", "auditkit.sections", False) in pairs
    assert ("auditkit.explain.check", "auditkit.checks", False) in pairs
    assert any(s == "auditkit.scanning" and t == "auditkit.builtin_checks" for s, t, _ in pairs)
    assert len(MODULES) > 60


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        if module != "auditkit":
            layer_of(module)


def test_no_cycle_among_top_level_imports() -> None:
    edges: dict[str, set[str]] = {}
    for a in ARROWS:
        if not a.deferred and a.source != a.target:
            edges.setdefault(a.source, set()).add(a.target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles at module level:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_cycle_even_through_deferred_imports() -> None:
    """Counting deferred arrows too, no cycle runs through modules of different packages (a
    cycle inside one package, e.g. auditkit.zoo and auditkit.zoo.recipes, is that package's
    business). Declared arrows are left out: each is one-way by its reason."""
    def package(m: str) -> str:
        return m if MODULES[m].name == "__init__.py" else m.rsplit(".", 1)[0]

    edges: dict[str, set[str]] = {}
    for a in ARROWS:
        if a.source != a.target and a.target != "auditkit" and (a.source, a.target) not in DECLARED:
            edges.setdefault(a.source, set()).add(a.target)
    cycles = [c for c in _cycles(edges) if len({package(m) for m in c}) > 1]
    assert not cycles, "import cycles (deferred imports included):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_package_root_imports_nothing() -> None:
    """``auditkit/__init__`` exports lazily (importlib on first use): importing it loads no other
    module, so any module may read ``auditkit.__version__`` without a cycle."""
    assert [str(a) for a in ARROWS if a.source == "auditkit"] == []


def test_no_arrow_points_up() -> None:
    bad = []
    for a in ARROWS:
        if a.target == "auditkit" or (a.source, a.target) in DECLARED:
            continue
        if a.source == "auditkit":
            continue
        if layer_of(a.target) > layer_of(a.source):
            bad.append(f"{a}: layer {LAYERS[layer_of(a.source)][0]} imports layer {LAYERS[layer_of(a.target)][0]}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_check_registry_imports_no_check() -> None:
    bad = [str(a) for a in ARROWS if a.source == "auditkit.checks" and layer_of(a.target) >= layer_of(CHECK_MODULES[0])
           and (a.source, a.target) not in DECLARED]
    assert not bad, "\n".join(bad)
    # ... and the built-in list names every module that registers a check.
    registering = sorted(m for m, p in MODULES.items()
                         if re.search(r"^@register_check", p.read_text(encoding="utf-8"), re.M))
    assert registering == sorted(CHECK_MODULES)
    builtin = (PACKAGE / "builtin_checks.py").read_text(encoding="utf-8")
    for m in registering:
        assert f'"{m}"' in builtin or f"import {m}" in builtin, f"{m} registers checks but builtin_checks does not list it"


def test_checks_and_defenses_do_not_import_the_zoo() -> None:
    guarded = [m for m in MODULES if m in CHECK_MODULES or m == "auditkit.defenses" or m.startswith("auditkit.defenses.")]
    bad = [str(a) for a in ARROWS if a.source in guarded and (a.target == "auditkit.zoo" or a.target.startswith("auditkit.zoo."))
           and (a.source, a.target) not in DECLARED]
    assert not bad, "checks/defenses importing the zoo:\n" + "\n".join(bad)


@pytest.mark.parametrize("pair", sorted(DECLARED))
def test_declared_arrows_still_exist(pair: tuple[str, str]) -> None:
    """A declared exception that the code no longer needs is removed from DECLARED."""
    assert any((a.source, a.target) == pair for a in ARROWS), f"{pair} is declared but not imported any more"
