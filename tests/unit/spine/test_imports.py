"""No import cycle in qexp/, plugins loaded in one place, package ``__init__``s that load no
plugin: rules over the import graph of imports_graph.py."""

from __future__ import annotations

from tests.unit.spine.imports_graph import PACKAGE, cycles, import_graph, module_name, registrations


def test_no_import_cycle():
    """Every import counts (a function's lazy one too, and the ``__init__``s an import runs),
    but those under ``if TYPE_CHECKING:``, which never run."""
    assert cycles(import_graph(runtime=True, packages=True)) == []


def test_the_walker_sees_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "sub" / "b.py").write_text("from . import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nimport pkg.sub.b\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.c\n"
    )
    graph = import_graph(pkg, runtime=True, packages=True)
    assert graph["pkg.c"] == {"pkg.sub", "pkg.sub.b"}  # pkg.sub's __init__ runs first
    assert graph["pkg.d"] == set()  # type-checking imports never run
    assert cycles(graph) == [["pkg.c", "pkg.sub", "pkg.sub.a", "pkg.sub.b"]]
    assert "pkg.c" in import_graph(pkg)["pkg.d"]  # for layering rules they count


def test_package_inits_load_no_plugin():
    """Plugins are loaded by qexp.plugins.load_plugins only: an ``__init__`` that imports them
    (behind a find_spec guard, so a renamed file silently unregisters) puts every importer of
    one module of its package into a circle through the registry."""
    plugins = set(registrations())
    graph = import_graph()
    for init in PACKAGE.rglob("__init__.py"):
        name = module_name(init)
        assert not graph[name] & plugins, f"{name} imports {sorted(graph[name] & plugins)}"
        assert "importlib" not in init.read_text(), f"{name} imports modules by name"


def test_load_plugins_imports_every_plugin_module():
    graph = import_graph()
    missing = sorted(set(registrations()) - graph["qexp.plugins"])
    assert not missing, f"qexp.plugins.load_plugins does not load {missing}"
