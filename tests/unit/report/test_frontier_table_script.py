"""scripts/gpu/frontier_table.py: the report's frontier table, with the build time and the
torch-twin Δ, from the records of a real 4xH100 TensorRT sweep."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu" / "frontier_table.py"
FIXTURE = ROOT / "tests" / "fixtures" / "sweep_tensorrt_4xh100"


def test_prints_the_frontier_of_the_records(tmp_path):
    p = subprocess.run(
        [sys.executable, str(SCRIPT), str(FIXTURE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the script finds its checkout's qexp from wherever it runs
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    head = next(line for line in lines if line.startswith("| row"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[-2:] == ["build s", "Δ vs torch twin (pt)"]
    rows = {
        r[0].strip("* "): r
        for line in lines
        if line.startswith("| ") and line != head
        for r in [[c.strip() for c in line.strip("|").split("|")]]
    }
    # job 16 (ptq_dr minmax): mAP 0.395792, 12523.5 img/s vs fp16's 10106.9, build 346.5 s,
    # align_map_delta -0.001058
    dr = dict(zip(cols, rows["ptq_dr minmax"], strict=True))
    assert (dr["Δ vs fp16 (pt)"], dr["×fp16 b32"], dr["img/s b32"]) == ("-0.85", "1.24", "12524")
    assert (dr["build s"], dr["Δ vs torch twin (pt)"], dr["INT8 layers"]) == ("347", "-0.11", "90")
    assert dict(zip(cols, rows["fp16"], strict=True))["×fp16 b32"] == "base"
    # the Q/DQ engine that did not build is named; SKIPPED repeats of finished jobs are not
    assert [line for line in lines if line.startswith("- not measured")] == [
        "- not measured: ptq minmax tensorrt yolov8n coco_val: FAILED (TensorRTError: "
        "BuildError: build_serialized_network returned no engine (see TensorRT's log))"
    ]


def test_no_fp16_engine_says_why(tmp_path):
    import shutil

    for job in ("8", "10"):  # two INT8 engines, no fp16 one
        shutil.copytree(FIXTURE / job, tmp_path / job)
    p = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 1 and p.stdout == ""
    assert "no FINISHED fp16 engine of backend=tensorrt" in p.stderr
    assert "2 INT8 engine(s)" in p.stderr
