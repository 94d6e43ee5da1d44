"""A job's recorded choice names what ran: overridden keys of an axis join its choice."""

from __future__ import annotations

from qexp.config.axes import effective_choices

BASE = {"model": "yolov8n", "data": "tiny", "quantizer": "ptq", "ignore": "none"}


def test_overridden_ignore_patterns_join_the_choice():
    got = effective_choices(BASE, ["ignore.patterns=[model.10.m.0.attn.pe.conv]", "ignore=none"])
    assert got["ignore"] == "none+patterns=[model.10.m.0.attn.pe.conv]"
    assert got["quantizer"] == "ptq" and got["model"] == "yolov8n"


def test_a_long_value_is_named_by_its_key_and_added_keys_count():
    long = "[" + ",".join(f"model.{i}.cv1.conv" for i in range(8)) + "]"
    got = effective_choices(BASE, [f"ignore.patterns={long}", "+quantizer.qdq_rules=trt"])
    assert got["ignore"] == "none+patterns"
    assert got["quantizer"] == "ptq+qdq_rules=trt"


def test_run_knobs_do_not_rename_the_choice_but_weights_do():
    got = effective_choices(
        BASE, ["model.imgsz=320", "data.max_images=1", "model.weights=yolov10n.yaml"]
    )
    assert got["model"] == "yolov8n+weights=yolov10n.yaml"
    assert got["data"] == "tiny"
