"""The layers import downward only (docs/architecture.md): reports read records and artifacts,
never quantizer internals or backend modules; measuring never depends on reporting."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.unit.spine.imports_graph import PACKAGE, import_graph, module_name, registrations


def _imports_of(prefix: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in import_graph().items() if m.startswith(prefix)}


def _reaching(prefix: str, targets: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} imports {d}"
        for m, deps in _imports_of(prefix).items()
        for d in deps
        if d.startswith(targets)
    )


def test_the_walker_sees_the_imports_it_must():
    graph = import_graph()
    assert "qexp.report.table" in graph["qexp.report.build"]  # from qexp.report.table import
    assert "qexp.report.columns" in graph["qexp.report.build"]  # from qexp.report import columns
    assert "qexp.trt.engine_info" in graph["qexp.backends.trt_results"]
    assert "qexp.data" in graph["qexp.runner"]  # inside a function


def test_report_imports_neither_quant_nor_backends():
    assert _reaching("qexp.report", ("qexp.quant", "qexp.backends")) == []


def test_measuring_does_not_depend_on_reporting():
    assert _reaching("qexp.backends", ("qexp.report",)) == []
    assert _reaching("qexp.quant", ("qexp.report",)) == []
    assert _reaching("qexp.trt", ("qexp.report",)) == []


def layer_table() -> dict[str, int]:
    """docs/architecture.md's layer table: each module (or package) it lists -> its layer."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    found = {}
    for layer, modules in re.findall(r"^\| (\d)\. [^|]+\| ([^|]+) \|", doc, re.M):
        for m in re.findall(r"`([^` ]+)`", modules):
            found["qexp." + m.removesuffix(".py").rstrip("/").replace("/", ".")] = int(layer)
    return found


def _layer(table: dict[str, int], module: str) -> int | None:
    owners = [k for k in table if module == k or module.startswith(k + ".")]
    return table[max(owners, key=len)] if owners else None


def test_no_module_imports_a_layer_above_its_own():
    """Every module stands in the table, and imports from its layer and those below only;
    qexp.plugins imports every plugin module (tracking sinks too), which is its job."""
    table, graph = layer_table(), import_graph()
    assert len(set(table.values())) == 8
    unlisted = sorted(m for m in graph if m != "qexp" and _layer(table, m) is None)
    assert unlisted == [], "modules missing from the layer table of docs/architecture.md"
    plugins = set(registrations())
    upward = sorted(
        f"{m} (layer {_layer(table, m)}) imports {d} (layer {_layer(table, d)})"
        for m, deps in graph.items()
        if m != "qexp"
        for d in deps
        if (_layer(table, d) or 0) > (_layer(table, m) or 0)
        and not (m == "qexp.plugins" and d in plugins)
    )
    assert upward == []


def test_package_inits_import_only_their_own_package():
    """The docs' claim: an ``__init__`` gathers its package's public names at most."""
    graph = import_graph()
    for init in PACKAGE.rglob("__init__.py"):
        name = module_name(init)
        outside = sorted(d for d in graph[name] if not d.startswith(name + "."))
        assert outside == [], f"{name} imports {outside}"


def test_plugins_read_the_typed_settings_only():
    """Quantizers, observers and backends read ``job.settings`` (the schema objects), never the
    composed DictConfig (``job.cfg``, OmegaConf): no fallback defaults, no casts."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"
        for room in ("quant", "backends")
        for path in sorted((PACKAGE / room).rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bjob\.cfg\b|\bOmegaConf\b|\bDictConfig\b", line)
    ]
    assert found == []
