"""The frontier table of docs/results/tensorrt-int8.md, recomputed from the run's own records
(tests/fixtures/int8_frontier_4xh100): the report reads each recipe as its own engine, against
the fp16 engine, and the figures the results file quotes are the records' figures."""

from __future__ import annotations

import pytest

from qexp.report.build import build
from qexp.report.load import from_records
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "int8_frontier_4xh100"


@pytest.fixture(scope="module")
def table():
    rep = build(from_records(FIXTURE), "int8_frontier_yolov8n")
    assert rep.frontier is not None
    return rep.frontier.set_index("label")


def test_every_finished_recipe_is_one_engine_against_fp16(table):
    assert len(table) == 15
    assert {"fp16", "trt_minmax", "ptq_trt_percentile", "ptq_percentile", "topk3", "topk5",
            "adaround", "ptq_dr_minmax"} <= set(table.index)  # fmt: skip
    assert "qat" not in table.index  # FAILED: no engine
    assert table.loc["fp16", "reference"] and table.loc["fp16", "ratio_b32"] == 1.0


def test_the_results_file_figures(table):
    def row(label):
        r = table.loc[label]
        return round(r["ratio_b32"], 2), round(r["delta_pt"], 2), int(r["reformat_layers"])

    assert row("trt_minmax") == (1.35, -0.38, 46)
    assert row("trt_entropy2") == (1.34, -3.5, 46)
    assert row("ptq_trt_percentile") == (1.24, -0.65, 59)
    assert row("ptq_percentile") == (1.0, -0.71, 83)
    assert row("ptq_minmax") == (1.03, -0.58, 82)
    assert row("topk3") == (1.09, -0.16, 64)
    # the placement rules: every observer's Q/DQ engine is faster with them than without
    for obs in ("minmax", "percentile", "mse", "entropy"):
        assert (
            table.loc[f"ptq_trt_{obs}", "ratio_b32"] > 1.15 * table.loc[f"ptq_{obs}", "ratio_b32"]
        )
    # no engine in the box (>= 1.4x at <= 0.3 pt loss)
    assert not ((table["ratio_b32"] >= 1.4) & (table["delta_pt"] >= -0.3)).any()
