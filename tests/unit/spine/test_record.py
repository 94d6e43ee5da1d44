"""The result record round-trips through JSON and is written atomically."""

from __future__ import annotations

import json
import os

import pytest

from qexp.record import FAILED, Record, atomic_write_text, read_record


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
