"""Quantizers and backends meet through declared contracts (qexp.contracts), checked once by
the runner; no plugin decides anything by another plugin's name."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from qexp.config.schema import BackendConfig
from qexp.config.validate import validate
from qexp.contracts import Accepts, Output, Precision, Route
from qexp.registry import BACKENDS, QUANTIZERS
from qexp.runner import combination_reason
from tests.unit.spine.imports_graph import PACKAGE, import_graph, registrations


@pytest.fixture
def float_only():
    """A backend that runs float models only, registered for the test."""

    @BACKENDS.register("float_only")
    class FloatOnly:
        accepts = Accepts(
            precisions=frozenset({Precision.fp32}),
            routes=frozenset({Route.float}),
            why_not={Precision.int8: "it has no INT8 kernels"},
        )

        def __init__(self, cfg):
            self.cfg = cfg

        def check(self, s, output):
            return None

    yield lambda s: dataclasses.replace(s, backend=BackendConfig(name="float_only"))
    BACKENDS.remove("float_only")


def test_the_runner_refuses_a_pair_by_the_declared_routes(compose, float_only):
    s = float_only(validate(compose(["quantizer=ptq"])))
    assert combination_reason(s) == (
        "quantizer=ptq makes int8 by route qdq; backend=float_only runs no precision int8: "
        "it has no INT8 kernels"
    )
    assert combination_reason(float_only(validate(compose(["quantizer=none"])))) is None
    fp16 = combination_reason(float_only(validate(compose(["quantizer=fp16"]))))
    assert fp16.endswith("runs no precision fp16: it runs precision fp32")


def test_a_quantizer_is_held_to_what_it_declares(compose):
    why = combination_reason(validate(compose(["quantizer=ptq", "quantizer.export=none"])))
    assert why.startswith("quantizer=ptq makes int8 by route dynamic_range, int8 by route qdq;")
    assert "quantizer.export=none asks it for int8 by route none" in why


def test_every_quantizer_declares_what_it_makes_and_every_backend_what_it_takes(compose):
    for entry in QUANTIZERS:
        assert entry.obj.produces, entry.name
        for out in entry.obj.produces:
            assert out.precision in Precision.__members__ and out.route in Route.__members__
    for entry in BACKENDS:
        assert isinstance(entry.obj.accepts, Accepts), entry.name
    tensorrt = BACKENDS.get("tensorrt").accepts
    assert all(tensorrt.refusal(Output(p, r)) is None for p in Precision for r in Route)


# ---- no plugin names another: read from the source, with ast ----

CONTRACTED = ("QUANTIZERS", "BACKENDS")  # the plugins that meet through qexp.contracts


def _literals(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [s for e in node.elts for s in _literals(e)]
    return []


def decisions_by_name(path: Path, names: set[str]) -> list[str]:
    """Comparisons in ``path`` of anything with a string literal from ``names``
    (``q.name == "trt_builtin"``, ``backend.name not in ("tensorrt",)``)."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                hits += [f"line {node.lineno}: {lit!r}" for lit in _literals(side) if lit in names]
    return hits


def test_the_contract_test_sees_a_plugin_named_by_another(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def check(cfg):\n    return cfg.quantizer.name == "trt_builtin"\n')
    assert decisions_by_name(bad, {"trt_builtin"}) == ["line 2: 'trt_builtin'"]


def test_no_quantizer_or_backend_names_another():
    """No quantizer or backend module decides by another quantizer's or backend's name, or
    imports another's module: what they may pair with is their declared contract."""
    plugins = {
        m: {name for reg, name in regs if reg in CONTRACTED}
        for m, regs in registrations().items()
        if any(reg in CONTRACTED for reg, _ in regs)
    }
    assert {"qexp.quant.ptq", "qexp.backends.onnxruntime", "qexp.quant.plugins.mqbench"} <= set(
        plugins
    )
    graph = import_graph()
    for mod, own in plugins.items():
        others = set().union(*(n for m, n in plugins.items() if m != mod)) - own
        path = PACKAGE.parent / (mod.replace(".", "/") + ".py")
        assert not decisions_by_name(path, others), (mod, decisions_by_name(path, others))
        imported = sorted(graph[mod] & (set(plugins) - {mod}))
        assert not imported, f"{mod} imports the plugin modules {imported}"
