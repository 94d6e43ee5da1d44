"""The INT8 frontier: TensorRT engines read against the fp16 engine (Δ mAP50-95 in points vs
batch-32 throughput ratio), on the records of a real 4xH100 sweep and on written ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from qexp.record import read_record
from qexp.report import frontier as F
from qexp.report.build import build
from qexp.report.load import from_mlflow, from_records
from qexp.report.table import comparison_table
from qexp.tracking.mlflow_sink import MlflowSink
from tests.conftest import ROOT
from tests.unit.report.conftest import OBSERVER_SWEEP, write_sweep

FIXTURE = ROOT / "tests" / "fixtures" / "sweep_tensorrt_4xh100"


@pytest.fixture(scope="module")
def real():
    return from_records(FIXTURE)


def test_the_real_sweep_is_read_against_its_fp16_engine(real):
    rep = build(real, "tensorrt_yolov8n")
    t = rep.frontier
    assert t is not None and not [n for n in rep.notes if "frontier" in n]
    by = t.set_index("label")
    # the FINISHED engines, each told apart (trt_builtin by calibrator, ptq_dr by observer);
    # the Q/DQ ptq job FAILED and the SKIPPED ones are no engines
    assert list(by.index) == [
        "fp32", "fp16", "trt_builtin minmax", "trt_builtin entropy2", "ptq_dr minmax",
        "ptq_dr entropy",
    ]  # fmt: skip
    # by hand from the result.json files: fp16 (job 4) 10106.916 img/s, mAP 0.404301, p50
    # 0.504448 ms; trt_builtin minmax (job 8) 13679.852 img/s, mAP 0.398319, p50 0.483088 ms
    trt = by.loc["trt_builtin minmax"]
    assert trt["ratio_b32"] == pytest.approx(13679.852 / 10106.916, rel=1e-6)  # 1.3535
    assert trt["delta_pt"] == pytest.approx((0.398319 - 0.404301) * 100, abs=1e-4)  # -0.598
    assert trt["ratio_b1"] == pytest.approx(0.504448 / 0.483088, rel=1e-5)
    assert (trt["reformat_layers"], trt["layers_int8"]) == (50, 112)
    # ptq_dr minmax (job 16): 12523.536 img/s, mAP 0.395792
    dr = by.loc["ptq_dr minmax"]
    assert dr["ratio_b32"] == pytest.approx(1.23910, abs=1e-5)
    assert dr["delta_pt"] == pytest.approx(-0.85092, abs=1e-4)
    assert by.loc["fp16", "reference"] and by.loc["fp16", "ratio_b32"] == 1.0
    # the front: faster at batch 32 or more accurate than every other engine; both ptq_dr
    # engines are beaten by trt_builtin minmax on both counts
    assert set(by.index[by["front"]]) == {
        "fp32",
        "fp16",
        "trt_builtin minmax",
        "trt_builtin entropy2",
    }
    assert not by["target"].any()  # none reaches 1.4x at <= 0.3 pt loss

    png = next(p for p in rep.plots if p.name == F.PNG)
    assert png.png.startswith(b"\x89PNG") and rep.plots[0] is png
    md = rep.markdown(plots_dir="report")
    assert f"![INT8 frontier](report/{F.PNG})" in md
    assert "| **trt_builtin minmax**   |   0.3983 |          -0.60 |     13680 |      1.35 |" in md
    assert "No engine reaches ≥ 1.4× fp16 at batch 32 with ≤ 0.3 pt mAP50-95 loss." in md
    assert md.index(F.TITLE) < md.index("| quantizer")  # above the comparison table
    page = rep.html()
    assert f"<h2>{F.TITLE}</h2>" in page and "1.35</td>" in page


def test_without_an_fp16_engine_the_frontier_is_skipped_with_why(real):
    rep = build(real[real["quantizer"] != "fp16"], "tensorrt_yolov8n")
    assert rep.frontier is None and F.PNG not in [p.name for p in rep.plots]
    (note,) = [n for n in rep.notes if "frontier" in n]
    assert note.startswith("INT8 frontier not drawn: no FINISHED fp16 engine of backend=tensorrt")
    assert "4 INT8 engine(s)" in note and "\n" not in note
    assert note in rep.html()


def test_a_sweep_without_engines_has_no_frontier_and_no_note(tmp_path):
    rep = build(from_records(write_sweep(tmp_path, OBSERVER_SWEEP)))
    assert rep.frontier is None and not [n for n in rep.notes if "frontier" in n]


def _engine(recipe: str | None, quantizer: str, ips: float, map_: float, **kw) -> dict:
    job = {
        "choices": {"quantizer": quantizer, "backend": "tensorrt", **kw.pop("choices", {})},
        "metrics": {
            "map50_95": map_,
            "throughput_ips_b32": ips,
            "latency_ms_p50": 1000 / ips,
            "layers_int8": 0.0 if quantizer == "fp16" else 90.0,
            "engine_bytes": 4e6,  # what a backend that builds engines logs
        },
        "overrides": [f"recipe={recipe}"] if recipe else [],
        **kw,
    }
    return job


def test_recipes_and_swept_settings_keep_engines_apart(tmp_path):
    """ptq_minmax and ptq_trt_minmax differ in their quantizer; two ptq jobs that differ only in
    quantizer.qdq_rules (a swept setting) are two engines with two names."""
    sweep = write_sweep(
        tmp_path / "recipes",
        [
            _engine("fp16", "fp16", 10000, 0.40),
            _engine("ptq_minmax", "ptq", 12000, 0.395),
            _engine("ptq_trt_minmax", "ptq_trt", 14500, 0.398),
        ],
    )
    df = from_records(sweep)
    t = comparison_table(df)
    assert t.attrs["rows"][0] == "recipe"
    assert list(t["recipe"]) == ["fp16", "ptq_minmax", "ptq_trt_minmax"]
    front = F.frontier(df, t.attrs["rows"])
    assert front is not None
    assert list(front["label"]) == ["fp16", "ptq_minmax", "ptq_trt_minmax"]
    hit = front.set_index("label").loc["ptq_trt_minmax"]
    assert hit["ratio_b32"] == pytest.approx(1.45) and hit["delta_pt"] == pytest.approx(-0.2)
    assert hit["target"] and hit["front"]
    assert "In the target box (≥ 1.4× fp16 at batch 32 with ≤ 0.3 pt mAP50-95 loss): " \
        "ptq_trt_minmax." in F.to_markdown(front)  # fmt: skip

    # the recipe survives MLflow (read back from the logged result.json)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sink = MlflowSink(uri)
    sink.client.create_experiment("demo", artifact_location=(tmp_path / "art").as_uri())
    for _, row in df.iterrows():
        sink.log(read_record(row["record_dir"]), Path(row["record_dir"]))
    assert sorted(from_mlflow(uri, "demo")["recipe"].dropna()) == sorted(df["recipe"])

    knob = write_sweep(
        tmp_path / "knob",
        [
            _engine(None, "fp16", 10000, 0.40),
            _engine(None, "ptq", 12000, 0.395, config={"quantizer": {"qdq_rules": "none"}}),
            _engine(None, "ptq", 13000, 0.394, config={"quantizer": {"qdq_rules": "trt"}}),
        ],
    )
    df = from_records(knob)
    rows = comparison_table(df).attrs["rows"]
    assert rows == ["quantizer", "quantizer.qdq_rules"]
    front = F.frontier(df, rows)
    assert front is not None
    assert list(front["label"]) == ["fp16", "ptq qdq_rules=none", "ptq qdq_rules=trt"]


def test_each_model_is_read_against_its_own_fp16_engine(tmp_path):
    v5 = {"choices": {"model": "yolov5n"}}
    v3 = {"choices": {"model": "yolov3u"}}
    df = from_records(
        write_sweep(
            tmp_path,
            [
                _engine(None, "fp16", 10000, 0.40),
                _engine(None, "ptq", 13000, 0.39),
                _engine(None, "fp16", 8000, 0.30, **v5),
                _engine(None, "ptq", 12000, 0.29, **v5),
                _engine(None, "ptq", 12000, 0.29, **v3),  # no fp16 engine of its own
            ],
        )
    )
    front = F.frontier(df, comparison_table(df).attrs["rows"])
    assert front is not None and front.attrs["group"] == ["model"]
    by = front.set_index("label")
    assert by.loc["yolov8n ptq", "ratio_b32"] == pytest.approx(1.3)
    assert by.loc["yolov5n ptq", "ratio_b32"] == pytest.approx(1.5)
    assert front.attrs["notes"] == ["model=yolov3u: no fp16 engine, its 1 engine(s) left out"]
    assert F.plot(front) is not None


def test_qexp_report_prints_the_frontier_above_the_table(capsys):
    from qexp.report.cli import main

    assert main(["--records", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"### {F.TITLE}")
    assert "| **trt_builtin entropy2** |   0.3656 |          -3.87 |     13703 |      1.36 |" in out
    assert out.index(F.TITLE) < out.index("| quantizer")


def test_fp16_engines_are_not_split_by_what_fp16_does_not_read(tmp_path):
    """Two fp16 engines that differ only in observer (one per sweep, read together): every INT8
    engine is read against the latest of them, whatever its observer."""
    df = from_records(
        write_sweep(
            tmp_path,
            [
                _engine(None, "fp16", 10000, 0.40, choices={"observer": "entropy"}),
                _engine(None, "ptq", 12000, 0.39, choices={"observer": "mse"}),
                _engine(None, "ptq", 13000, 0.38, choices={"observer": "percentile"}),
                _engine(None, "fp16", 8000, 0.40, choices={"observer": "minmax"}),
            ],
        )
    )
    front = F.frontier(df, ["quantizer", "observer"])
    assert front is not None and front.attrs["group"] == []
    assert list(front["ratio_b32"]) == pytest.approx([1.25, 1.5, 1.625, 1.0])


def test_any_backend_that_builds_engines_is_read_against_its_own_fp16_engine(tmp_path):
    """Engines are the rows whose backend logged an engine (engine_bytes), whatever its name;
    each backend's INT8 engines are read against its own fp16 engine. A backend that builds no
    engine (onnxruntime here, even at batch 32) is in no frontier."""
    other = {"choices": {"backend": "openvino"}}
    ort = {"choices": {"backend": "onnxruntime"}}
    jobs = [
        _engine(None, "fp16", 10000, 0.40),
        _engine(None, "ptq", 13000, 0.39),
        _engine(None, "fp16", 2000, 0.40, **other),
        _engine(None, "ptq", 3000, 0.395, **other),
        _engine(None, "fp16", 500, 0.40, **ort),
        _engine(None, "ptq", 900, 0.39, **ort),
    ]
    for job in jobs[4:]:
        del job["metrics"]["engine_bytes"]
    df = from_records(write_sweep(tmp_path, jobs))
    front = F.frontier(df, comparison_table(df).attrs["rows"])
    assert front is not None and front.attrs["group"] == ["backend"]
    assert front.attrs["backends"] == ["tensorrt", "openvino"]
    by = front.set_index("label")
    assert by.loc["ptq tensorrt", "ratio_b32"] == pytest.approx(1.3)
    assert by.loc["ptq openvino", "ratio_b32"] == pytest.approx(1.5)
    assert by.loc["ptq openvino", "delta_pt"] == pytest.approx(-0.5)
    assert not [lb for lb in by.index if "onnxruntime" in lb]
    assert "Each tensorrt, openvino engine read against the fp16 engine of its backend" in (
        F.to_markdown(front)
    )
    # without its fp16 engine, a backend's engines are left out, and the note says whose
    front = F.frontier(df.drop(index=2), comparison_table(df).attrs["rows"])
    assert front.attrs["notes"] == ["backend=openvino: no fp16 engine, its 1 engine(s) left out"]
