"""The comparison table's ΔmAP50-95 interval, read from the jobs' matches artifacts (the
records of a real ORT search on tiny data, tests/fixtures/search_tiny)."""

from __future__ import annotations

import shutil
from pathlib import Path

from qexp.eval.bootstrap import Matches, paired_delta
from qexp.record import read_record
from qexp.report import intervals
from qexp.report.load import from_records
from qexp.report.table import comparison_table, display_cells

FIXTURE = Path(__file__).parents[2] / "fixtures" / "search_tiny"


def test_the_table_gives_each_int8_row_its_paired_interval(tmp_path):
    root = tmp_path / "sweep"
    shutil.copytree(FIXTURE, root)
    for j in ("0", "1", "2", "3"):  # the records where they now are
        read_record(root / j).replace(job_dir=str(root / j), resumed_from=None).write(root / j)
    table = comparison_table(from_records(root), baseline={"quantizer": "none"})
    assert intervals.CI in table and table.attrs["kinds"][intervals.CI] == ("interval", "map50_95")
    assert any(n.startswith(intervals.CI) for n in table.attrs["notes"])
    cells = display_cells(table)
    ref = Matches.load(root / "0" / "artifacts" / "matches_onnxruntime.npz")
    for (_, row), cell in zip(table.iterrows(), cells, strict=True):
        if row["quantizer"] == "none":
            assert cell[intervals.CI] == ""  # the baseline row itself
            continue
        job = next(
            j for j in ("1", "2", "3")
            if read_record(root / j).metrics["map50_95"] == row["map50_95"]
        )  # fmt: skip
        d = paired_delta(Matches.load(root / job / "artifacts" / "matches_onnxruntime.npz"), ref)
        assert cell[intervals.CI] == intervals.fmt(d)
        assert cell[intervals.CI].endswith(intervals.NOISE_MARK) == d.within_noise()
    assert sum(bool(c[intervals.CI]) for c in cells) == 3
