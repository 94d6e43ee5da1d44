"""The engine cache key is derived from the protocol's Request fields: it keys what the old
hand-kept tuple did, a field added to the protocol is keyed unless declared outside the engine,
and the calibrator names agree across the schema, the protocol and TensorRT's classes."""

from __future__ import annotations

import dataclasses

import pytest

from qexp.backends.trt_engine_key import PROBED, engine_key
from qexp.config.schema import TrtCalibrator
from qexp.trt import protocol

# the 17 parts of the key before it was derived (backends/tensorrt.py at main 23647ac)
OLD_TUPLE = ("onnx", "dynamic_range", "precision", "route", "calibrator", "calib_dir",
             "batch_sizes", "workspace_gb", "opt_level", "fp16_fallback", "tf32", "tensorrt",
             "gpu", "tactic_sources", "avg_timing_iterations", "calib_batch", "format_filter")  # fmt: skip
PROBE = {"ok": True, "tensorrt": "8.6.0", "gpu": "NVIDIA H100 80GB HBM3"}
FIELDS = {f.name for f in dataclasses.fields(protocol.Request)}


def _request(tmp_path, **over) -> protocol.Request:
    for name, text in (("m.onnx", "graph"), ("dr.json", '{"x": 1.0}')):
        if not (tmp_path / name).exists():
            (tmp_path / name).write_text(text)
    base = dict(onnx=str(tmp_path / "m.onnx"), engine="", out_dir=str(tmp_path),
                precision="int8", route="trt_builtin", calibrator="entropy2",
                calib_dir=str(tmp_path / "calib"))  # fmt: skip
    return protocol.Request(**(base | over))


def test_the_key_covers_exactly_what_the_old_tuple_did(tmp_path):
    assert set(engine_key(_request(tmp_path), PROBE)) == set(OLD_TUPLE)
    # nothing is newly keyed today: every other field is declared outside the engine, or was
    # added since and is keyed only away from its default (engines cached before keep their key)
    assert set(OLD_TUPLE) - set(PROBED) == FIELDS - protocol.NOT_IN_ENGINE - protocol.ADDED


def test_the_declarations_name_request_fields():
    assert protocol.NOT_IN_ENGINE <= FIELDS
    assert set(protocol.ROUTE_ONLY) <= FIELDS - protocol.NOT_IN_ENGINE
    assert set(protocol.FILE_FIELDS) <= FIELDS - protocol.NOT_IN_ENGINE
    assert protocol.ADDED <= FIELDS - protocol.NOT_IN_ENGINE
    assert set(protocol.ROUTE_ONLY.values()) <= {"qdq", "dynamic_range", "trt_builtin"}


# a value each field can take other than _request's (every Request field but onnx)
OTHER = {"engine": "/e.plan", "out_dir": "/elsewhere", "precision": "fp16", "route": "float",
         "calibrator": "minmax", "calib_dir": "/c2", "calib_cache": "/c.cache",
         "dynamic_range": "DR", "timing_cache": "/t.cache", "workspace_gb": 8.0, "opt_level": 5,
         "tactic_sources": ["CUDNN"], "avg_timing_iterations": 4, "format_filter": "no_fp32",
         "calib_batch": 8, "build_profile": True, "fp16_fallback": False, "tf32": True,
         "batch_sizes": [1], "reuse_engine": False, "eval_input": "/x.npy", "eval_batch": 32,
         "eval_all_batches": False, "warmup": 1, "iters": 2, "cuda_graph": False,
         "latency_lock": "/l.lock", "build_slots": 2, "profile_iters": 0,
         "log_level": "verbose",
         "preview_features": ["PROFILE_SHARING_0806"], "float_layers": ["/model.1/conv/Conv"]}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FIELDS - {"onnx"}))
def test_a_field_changes_the_key_unless_declared_outside_the_engine(tmp_path, name):
    assert set(OTHER) == FIELDS - {"onnx"}, "a new Request field needs a value in OTHER"
    value = str(tmp_path / "dr.json") if OTHER[name] == "DR" else OTHER[name]
    before = engine_key(_request(tmp_path), PROBE)
    after = engine_key(_request(tmp_path, **{name: value}), PROBE)
    assert (before != after) == (name not in protocol.NOT_IN_ENGINE)


def test_files_are_keyed_by_content_and_other_routes_ignore_calibration(tmp_path):
    key = engine_key(_request(tmp_path), PROBE)
    (tmp_path / "copy.onnx").write_bytes(b"graph")
    assert engine_key(_request(tmp_path, onnx=str(tmp_path / "copy.onnx")), PROBE) == key
    (tmp_path / "m.onnx").write_bytes(b"other graph")
    assert engine_key(_request(tmp_path), PROBE) != key
    fp16 = dict(precision="fp16", route="float", calibrator=None, calib_dir=None)
    assert engine_key(_request(tmp_path, **fp16, calib_batch=8), PROBE) == engine_key(
        _request(tmp_path, **fp16), PROBE
    )
    assert engine_key(_request(tmp_path), PROBE | {"gpu": "NVIDIA A100"}) != key


def test_calibrator_names_agree():
    """The calibrator axis (config/schema.py), the protocol's names and TensorRT's classes."""
    schema = {c.value for c in TrtCalibrator if c != TrtCalibrator.none}
    assert schema == set(protocol.CALIBRATORS) == set(protocol.CALIBRATOR_CLASSES)


def test_choices_key_as_their_values(tmp_path):
    """The backend passes the Deployable's Route and Precision members; the key is the same as
    for their strings (what a request read back from JSON holds)."""
    from qexp.contracts import Precision, Route
    from qexp.job import content_hash

    as_str = engine_key(_request(tmp_path), PROBE)
    as_enum = engine_key(
        _request(tmp_path, precision=Precision.int8, route=Route.trt_builtin), PROBE
    )
    assert content_hash(as_enum) == content_hash(as_str) and as_enum["calib_batch"] == 1
