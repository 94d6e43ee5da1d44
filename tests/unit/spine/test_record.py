"""The result record round-trips through JSON and is written atomically."""

from __future__ import annotations

import json
import os

import pytest

from qexp.record import (
    FAILED,
    FINISHED,
    RUNNING,
    SKIPPED,
    Equivalent,
    Record,
    atomic_write_text,
    read_record,
)


def _record(**kw) -> Record:
    base = dict(
        record_id="abc",
        status="FINISHED",
        experiment="e",
        config_hash="h1",
        choices={"model": "yolov8n", "quantizer": "ptq"},
        overrides=["quantizer=ptq"],
        config={"model": {"imgsz": 640}},
        metrics={"map50_95": 0.39, "latency_ms_p50": 12.5},
        artifacts={"alignment": "alignment.json"},
        info={"quantized": ["model.0.conv"], "ignored": []},
        versions={"python": "3.11"},
    )
    base.update(kw)
    return Record(**base)


def test_round_trip(tmp_path):
    rec = _record()
    assert Record.from_json(rec.to_json()) == rec
    rec.write(tmp_path)
    assert read_record(tmp_path) == rec
    assert json.loads((tmp_path / "result.json").read_text())["metrics"]["map50_95"] == 0.39


def test_equivalent_to_round_trips(tmp_path):
    rec = _record(
        status=SKIPPED,
        reason="any words",
        equivalent_to=Equivalent("/runs/0", FINISHED, ("observer", "calibrator")),
    )
    assert Record.from_json(rec.to_json()) == rec
    rec.write(tmp_path)
    assert read_record(tmp_path) == rec
    stored = json.loads((tmp_path / "result.json").read_text())["equivalent_to"]
    assert stored == {
        "job_dir": "/runs/0",
        "status": "FINISHED",
        "unread": ["observer", "calibrator"],
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (
            "equivalent to the FINISHED job in /runs/a b/0: quantizer=none does not use observer",
            Equivalent("/runs/a b/0", FINISHED, ("observer",)),
        ),
        (
            "equivalent to the job running now in /gpu/sweep/1 (same config hash); re-run the "
            "sweep to resume it if that one fails",
            Equivalent("/gpu/sweep/1", RUNNING),
        ),
        ("calibrator=minmax: ptq does not use TensorRT calibrators", None),
    ],
)
def test_records_written_before_equivalent_to_read_it_from_their_reason(reason, expected):
    old = _record(status=SKIPPED, reason=reason).to_dict()
    del old["equivalent_to"]  # the field did not exist
    assert Record.from_dict(old).equivalent_to == expected


def test_failed_record_keeps_error(tmp_path):
    rec = _record(status=FAILED, error="RuntimeError: boom", metrics={})
    rec.write(tmp_path)
    assert read_record(tmp_path / "result.json").error == "RuntimeError: boom"


def test_bad_status_and_unknown_fields_rejected():
    with pytest.raises(ValueError, match="status"):
        _record(status="DONE")
    d = _record().to_dict() | {"surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        Record.from_dict(d)


def test_unreadable_record_names_file(tmp_path):
    p = tmp_path / "result.json"
    p.write_text('{"record_id": "x", "stat')  # truncated
    with pytest.raises(ValueError, match=str(p)):
        read_record(p)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "result.json"
    atomic_write_text(p, "old")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(p, "new content that would be truncated")
    assert p.read_text() == "old"
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
