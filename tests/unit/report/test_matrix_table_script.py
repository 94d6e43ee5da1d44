"""scripts/gpu/matrix_table.py on the records of the H100 architecture matrix
(tests/fixtures/arch_matrix_h100): the figures docs/results/tensorrt-int8.md quotes."""

from __future__ import annotations

from tests.conftest import ROOT, load_script


def test_matrix_table_of_the_h100_records():
    mt = load_script("scripts/gpu/matrix_table.py")
    rows = mt.records(ROOT / "tests" / "fixtures" / "arch_matrix_h100")
    assert len(rows) == 16
    lines = {ln.split(" | ")[0].strip("| "): ln for ln in mt.table(rows).splitlines()}
    assert "| pass | none |" in lines["yolov8n"] and lines["yolov8n"].endswith("| 1.21 |")
    assert "| refused | model.10.m.0.attn.pe.conv |" in lines["yolo11n"]
    assert "model.10.m.0.attn.pe.conv, model.22.m.0.1.attn.pe.conv" in lines["yolo26n"]
    assert lines["yolov5nu"].endswith("| 0.70 |")  # Q/DQ slower than fp16 there
    text = mt.table(rows)
    assert "yolo12n fp16: FAILED" in text and "reshape changes volume" in text
