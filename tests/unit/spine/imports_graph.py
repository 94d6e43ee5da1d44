"""qexp's import graph, read from the sources with the standard library's ``ast`` (nothing is
imported): module -> the qexp modules it imports, at the top or inside a function. The rules
over it are tests: test_layers.py (what may import what), test_imports.py (no cycle, plugins
loaded in one place), test_contracts.py (no plugin names another)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "qexp"
REGISTRIES = ("QUANTIZERS", "BACKENDS", "OBSERVERS", "MODEL_FAMILIES", "TRACKERS")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (never imported at run time)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def import_graph(
    root: Path = PACKAGE, runtime: bool = False, packages: bool = False
) -> dict[str, set[str]]:
    """Every module of the package at ``root`` -> the package's modules it imports.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``;
    relative imports are resolved; third-party imports are left out. ``runtime``: leave out
    imports under ``if TYPE_CHECKING:``. ``packages``: importing ``a.b.c`` also runs the
    ``__init__`` of ``a`` and ``a.b``, so those count too, but the importer's own packages
    (already being imported when it runs)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_only(tree) if runtime else set()
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    found.add(sub if sub in files else base)
        if packages:
            own = name.split(".")
            found |= {
                ".".join(m.split(".")[:i])
                for m in found
                for i in range(1, len(m.split(".")))
                if m.split(".")[:i] != own[:i]
            }
        graph[name] = {m for m in found if m == top or m.startswith(top + ".")} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def registrations(root: Path = PACKAGE) -> dict[str, set[tuple[str, str]]]:
    """Module -> the (registry, name) pairs it registers (``@REGISTRY.register("name")``)."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "register"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in REGISTRIES
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                entry = (node.func.value.id, node.args[0].value)
                found.setdefault(module_name(path, root), set()).add(entry)
    return found
