"""No import cycle among the modules of ``llm_gateway``: two modules that need each other are one concept
split in two, or a dependency pointing the wrong way, whether Python happens to tolerate it or not.

The graph is read from the source with ``ast``, so it sees every import, not only those that run:

- Every ``import``/``from … import`` anywhere in a module counts: at module level, inside a function
  (a lazy import still is a dependency by design) and under ``if TYPE_CHECKING:``.
- So do the lazy ``"module:attr"`` strings of a registry (``providers/registry.py``, uvicorn's factory
  in ``cli.py``) and ``importlib.import_module("…")`` with a constant name: imports by another route.
- An import names the module it binds: ``import a.b.c`` and ``from a.b import c`` (``c`` a submodule)
  are edges to ``a.b.c``; ``from a.b import name`` is an edge to ``a.b``, the package's ``__init__``,
  which is what runs to give ``name``. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``,
  but that is not counted as an edge: every package ``__init__`` that re-exports its submodules would
  otherwise form a cycle with each of them (the classic false positive), while a module that really
  imports names from its own package's ``__init__`` (``from a.b import name`` inside ``a/b/x.py``, with
  ``a/b/__init__`` importing ``x``) is still caught, as it should be: that one breaks on import order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import llm_gateway

PACKAGE_DIR = Path(llm_gateway.__file__).parent

# Cycles being removed, each a set of modules forming one strongly connected component; any other cycle
# fails the test. Empty: issue 12 removed the last two (pipeline <-> streaming, early_refusals <-> facade).
KNOWN_CYCLES_BEING_REMOVED: set[frozenset[str]] = set()

Graph = dict[str, set[str]]


def modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, packages by their ``__init__.py``."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported_names(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every dotted name ``module`` imports, by statement or by string, at any depth of its source."""
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in known else base
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name, colon, attribute = node.value.partition(":")
            if colon and attribute.isidentifier() and name in known:
                yield name  # a lazy registry entry, "package.module:attr"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in known
        ):
            yield node.args[0].value


def import_graph(package_dir: Path) -> Graph:
    """Module -> the modules of the same package it imports (names outside the package are dropped)."""
    known = modules(package_dir)
    graph: Graph = {name: set() for name in known}
    for module, path in known.items():
        for name in _imported_names(module, path, known):
            while name and name not in known:  # ``import a.b.attr`` style or a module's attribute
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].add(name)
    return graph


def cycles(graph: Graph) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan), each a set of modules
    that all reach one another through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(component: frozenset[str], graph: Graph) -> str:
    """A cycle as its members and the imports between them: ``a -> b`` per edge."""
    edges = [f"    {a} -> {b}" for a in sorted(component) for b in sorted(graph[a] & component)]
    return " <-> ".join(sorted(component)) + "\n" + "\n".join(edges)


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE_DIR)
    found = cycles(graph)
    for component in found:
        print(describe(component, graph))
    unexpected = [c for c in found if c not in KNOWN_CYCLES_BEING_REMOVED]
    assert not unexpected, "import cycles:\n" + "\n".join(describe(c, graph) for c in unexpected)


def test_the_known_cycles_are_still_there() -> None:
    """Once one is gone, drop it from ``KNOWN_CYCLES_BEING_REMOVED`` so that it cannot come back unnoticed."""
    gone = KNOWN_CYCLES_BEING_REMOVED - set(cycles(import_graph(PACKAGE_DIR)))
    assert not gone, f"no longer cycles, remove them from KNOWN_CYCLES_BEING_REMOVED: {sorted(map(sorted, gone))}"


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The rules above, on a package of its own: lazy, TYPE_CHECKING, relative, registry strings, packages."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "b.py": "def f():\n    from . import a\n",
        "c.py": "import importlib\nREGISTRY = {'x': 'pkg.d:Thing'}\ndef g():\n    importlib.import_module('pkg.e')\n",
        "d.py": "",
        "e.py": "import os.path\n",
        "sub/__init__.py": "from pkg.sub.x import X\n",
        "sub/x.py": "import pkg.d\nfrom pkg.sub import y\nfrom ..sub.y import Y\n",
        "sub/y.py": "from pkg.sub import X\n",
    }
    for name, source in sources.items():
        (package / name).write_text(source)

    graph = import_graph(package)
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.a"},
        "pkg.c": {"pkg.d", "pkg.e"},
        "pkg.d": set(),
        "pkg.e": set(),
        "pkg.sub": {"pkg.sub.x"},
        "pkg.sub.x": {"pkg.d", "pkg.sub.y"},
        "pkg.sub.y": {"pkg.sub"},  # a name from its package's __init__, which imports x, which imports y
    }
    assert sorted(map(sorted, cycles(graph))) == [
        ["pkg.a", "pkg.b"],
        ["pkg.sub", "pkg.sub.x", "pkg.sub.y"],
    ]
