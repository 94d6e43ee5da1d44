"""The HTML report renders in headless Chromium (skips where no Chromium is installed)."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.conftest import ROOT
from tests.e2e.browser import needs_chromium

pytestmark = pytest.mark.skipif(
    not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
    reason="no Chromium (apt-get install -y chromium)",
)


def test_report_page_screenshot(tmp_path):
    from PIL import Image

    from qexp.report.build import build
    from qexp.report.load import from_records
    from tests.unit.report.conftest import OBSERVER_SWEEP, write_sweep

    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshot import screenshot

    rep = build(from_records(write_sweep(tmp_path, OBSERVER_SWEEP)), "demo")
    page = rep.write(tmp_path / "report" / "report.html")[0]
    png = screenshot(str(page), tmp_path / "shot.png", size="1200,900", wait_ms=2000)
    with Image.open(png) as im:
        assert im.size == (1200, 900)
        # a rendered page: text, table rules and the plot give many colours, a blank one few
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20


# A TensorRT sweep's full metric set, two checkpoints and two dataset roots swept by path: the
# widest table the default report makes.
TRT_METRICS = {
    "map50_95": 0.371,
    "map50": 0.526,
    "torch/map50_95": 0.372,
    "latency_ms_p50": 1.18,
    "latency_ms_p90": 1.24,
    "latency_ms_p50_b32": 10.26,
    "throughput_ips_b1": 847.5,
    "throughput_ips_b32": 3118.4,
    "engine_bytes": 12_582_912,
    "build_s": 61.3,
    "layers_int8": 61,
    "layers_fp16": 12,
    "layers_fp32": 4,
    "reformat_layers": 3,
    "align_map_delta": -0.0004,
}
WEIGHTS = ("/mnt/team/checkpoints/yolov8n/2026-10-01/best.pt", "/mnt/team/checkpoints/yolov8n-qat/2026-10-14/best.pt")  # fmt: skip
ROOTS = ("/datasets/coco/val2017", "/datasets/coco-corrupted/val2017-fog")


def _wide_sweep(tmp_path):
    from tests.unit.report.conftest import write_sweep

    jobs = []
    for w in WEIGHTS:
        for r in ROOTS:
            for q, obs in (("none", "minmax"), ("fp16", "minmax"), ("ptq", "entropy")):
                metrics = {k: v * (0.9 if q == "ptq" else 1.0) for k, v in TRT_METRICS.items()}
                config = {"model": {"weights": w}, "data": {"root": r}}
                jobs.append({"choices": {"quantizer": q, "observer": obs, "backend": "tensorrt"},
                             "metrics": metrics, "config": config})  # fmt: skip
    jobs.append({"choices": {"quantizer": "trt_builtin", "calibrator": "legacy"},
                 "status": "SKIPPED", "reason": "calibrator=legacy: IInt8LegacyCalibrator is "
                 "not in TensorRT 10.8 (removed with the implicit INT8 route); use export=qdq"})  # fmt: skip
    return write_sweep(tmp_path, jobs, experiment="trt_wide")


# at the comparison table box's scroll start and end (not the frontier's or the paper's): where the page, the box, the table and each
# header cell are; whether a header's text overflows its cell (a column squeezed too narrow)
_LAYOUT_JS = """(() => { const box = [...document.querySelectorAll('.scroll')].find(
    b => b.querySelector('table.qexp:not(.frontier):not(.paper)'));
  const t = box.querySelector('table.qexp');
  const cells = () => Object.fromEntries([...t.querySelectorAll('thead th')].map(th => {
    const r = th.getBoundingClientRect();
    return [th.innerText.replace(/\\s+/g, ''), {left: r.left, right: r.right,
      squeezed: th.scrollWidth > th.clientWidth + 1}]; }));
  const start = cells(); box.scrollLeft = box.scrollWidth; const end = cells();
  const b = box.getBoundingClientRect();
  return {page: document.documentElement.scrollWidth, boxWidth: box.clientWidth,
          table: t.scrollWidth, boxLeft: b.left, boxRight: b.right, start, end}; })()"""


def _layout(rep, tmp_path) -> dict:
    from tests.e2e.browser import chromium

    page = rep.write(tmp_path / "report.html")[0]
    with chromium(1400, 900) as chrome:
        chrome.goto(page.as_uri(), settle_s=0.5)
        return chrome.js(_LAYOUT_JS)


@needs_chromium
@pytest.mark.parametrize("failed", [False, True])
def test_a_sweep_table_fits_a_1400px_window(tmp_path, failed):
    """The real CPU sweep's table, also with its SKIPPED rows and their notes: no sideways
    scrolling at 1400 px, no column squeezed under its header."""
    from qexp.report.build import Options, build
    from qexp.report.load import from_records

    sweep = ROOT / "tests" / "fixtures" / "sweep_cpu_observers"
    rep = build(from_records(sweep), "cpu_observers", Options(failed=failed))
    m = _layout(rep, tmp_path)
    assert m["page"] <= 1400 and m["table"] <= m["boxWidth"], m
    assert not [h for h, c in m["start"].items() if c["squeezed"]], m["start"]


@needs_chromium
def test_a_wide_table_pins_its_labels_and_keeps_the_metrics_in_view(tmp_path):
    """TensorRT's full metric set, checkpoints and dataset roots swept by path: the long
    values are cut to what tells them apart and wrap, mAP and latency are in view beside
    them, and the rest scrolls inside the table's box under the pinned label columns."""
    from qexp.report.build import build
    from qexp.report.load import from_records

    rep = build(from_records(_wide_sweep(tmp_path)), "trt_wide")
    m = _layout(rep, tmp_path)
    start, end = m["start"], m["end"]
    assert m["page"] <= 1400, m  # the page never scrolls sideways, only the table's box
    assert not [h for h, c in start.items() if c["squeezed"]], start
    for metric in ("map50_95", "Δmap50_95", "latency_ms_p50"):
        assert start[metric]["right"] <= m["boxRight"], (metric, m)
    labels = ["quantizer", "observer", "model.weights", "data.root"]
    assert [start[h]["left"] for h in labels] == [end[h]["left"] for h in labels], m
    if m["table"] > m["boxWidth"]:  # it did scroll: the metrics moved, the labels did not
        assert end["map50_95"]["left"] < start["map50_95"]["left"]
