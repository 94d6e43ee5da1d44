"""The layers import downward only (docs/architecture.md): reports read records and artifacts,
never quantizer internals or backend modules; measuring never depends on reporting."""

from __future__ import annotations

from tests.unit.spine.imports_graph import import_graph


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
