"""The MLflow UI as a user first sees it: `qexp ui` (`make ui` in the repository) run in the
directory a sweep ran in, over the real store it finds there (./outputs/mlflow.db), the link it
prints opened in headless Chromium at 1400x900.

The store holds a real sweep's records (tests/fixtures/sweep_cpu_observers: yolov8n fp32 and
PTQ with four observers on the 206-image coco_val subset, ONNX Runtime on a loaded 2-core
CPU), logged by `qexp ingest`. Checked: the runs open in the training view (not the GenAI
traces pages), with status, duration, mAP and latency columns shown; a SKIPPED job reads
SKIPPED and carries the same MLflow status icon as a finished one (not a red "Killed"); run
durations are the jobs' own; MLflow's empty Default experiment is not listed. The screenshot
is docs/img/mlflow_runs.png (rewritten with QEXP_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qexp.record import FINISHED, SKIPPED, Record, find_records, read_record
from qexp.tracking.ingest import ingest
from qexp.tracking.server import free_port
from tests.conftest import ROOT
from tests.e2e.browser import DOCS_IMG, UPDATE_ENV, chromium, needs_chromium, shoot

pytestmark = needs_chromium
FIXTURE = ROOT / "tests" / "fixtures" / "sweep_cpu_observers"
EXPERIMENT = "cpu_observers"

# every row the grid drew, as {column id: text}; AG Grid splits a row over its pinned and
# scrolling containers, joined here by row index
ROWS_JS = """(() => { const rows = {};
  for (const r of document.querySelectorAll('.ag-row[row-index]')) {
    const i = r.getAttribute('row-index'); rows[i] = rows[i] || {};
    for (const c of r.querySelectorAll('[col-id]')) {
      rows[i][c.getAttribute('col-id')] = c.innerText.trim();
      const svg = c.querySelector('svg');
      if (c.getAttribute('col-id') === 'runDateAndNestInfo' && svg) rows[i].icon = svg.innerHTML;
    }
  }
  return Object.values(rows); })()"""
# the header cells drawn, {column id: [text, left edge in px]}
HEADERS_JS = """Object.fromEntries([...document.querySelectorAll('.ag-header-cell[col-id]')]
  .map(e => [e.getAttribute('col-id'), [e.innerText.trim(), e.getBoundingClientRect().left]]))"""
CLICK_JS = "(() => { const b = document.querySelector('[data-component-id=\"%s\"]'); " \
    "if (b) b.click(); return Boolean(b); })()"  # fmt: skip


def _copy_sweep(dst: Path) -> list[Record]:
    """The fixture records under ``dst`` (paths rewritten; artifacts are not in the repo)."""
    recs = []
    for path in find_records(FIXTURE):
        job = dst / path.parent.name
        job.mkdir(parents=True)
        rec = read_record(path).replace(
            sweep_id=str(dst), job_dir=str(job), artifacts={}, resumed_from=None
        )
        rec.write(job)
        shutil.copy(path.parent / "config.yaml", job / "config.yaml")
        recs.append(rec)
    return recs


def _seconds(text: str) -> float:
    """MLflow's duration cell ("250ms", "1.8s", "4.6min", "1.2h") in seconds."""
    m = re.fullmatch(r"([\d.]+)\s*(ms|s|min|h)", text)
    assert m, f"not a duration: {text!r}"
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "min": 60, "h": 3600}[m.group(2)]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(runs link printed by qexp.ui, records); the UI and its server stopped afterwards."""
    out = tmp_path_factory.mktemp("ui") / "outputs"
    recs = _copy_sweep(out / "sweeps" / EXPERIMENT / FIXTURE.name)
    assert ingest([out / "sweeps"], uri=f"sqlite:///{out / 'mlflow.db'}").logged == len(recs)
    # `qexp ui` in the directory the sweeps ran in: it finds the store in ./outputs there
    cmd = [sys.executable, "-m", "qexp.cli", "ui", "--port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if k != "QEXP_OUTPUT_DIR"}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=out.parent, env=env, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        link, deadline = None, time.monotonic() + 180
        while link is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, f"qexp.ui exited {proc.returncode}"
                continue
            if line.strip().startswith(f"{EXPERIMENT}: http"):
                link = line.split(": ", 1)[1].strip()
        assert link, "qexp.ui printed no link for the experiment"
        yield link, recs
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_runs_open_in_the_training_view_with_status_map_latency(ui, tmp_path):
    link, recs = ui
    with chromium(1400, 900) as chrome:
        chrome.goto(link, settle_s=1)
        assert chrome.wait_for("document.querySelectorAll('.ag-row[row-index]').length", 90)
        chrome.js(CLICK_JS % "mlflow.assistant.chat_panel.close")  # MLflow's own side panel
        time.sleep(2)
        route = chrome.js("location.hash")
        assert route.startswith("#/experiments/") and "/runs?" in route, route
        assert "workflowType=machine_learning" in route
        headers = chrome.js(HEADERS_JS)
        shown = ["tags.`qexp.status`", "duration", "metrics.`map50_95`", "metrics.`map50`"]
        shown += ["metrics.`latency_ms_p50`", "params.`quantizer`", "params.`observer`"]
        for col in shown:  # drawn, in this order, inside the 1400 px window
            assert col in headers and headers[col][1] < 1400 - 50, (col, headers)
        lefts = [headers[c][1] for c in shown]
        assert lefts == sorted(lefts), headers
        assert headers["tags.`qexp.status`"][0] == "qexp.status"
        rows = chrome.js(ROWS_JS)
        assert len(rows) == len(recs), rows

        by_status: dict[str, list[dict]] = {}
        for row in rows:
            by_status.setdefault(row["tags.`qexp.status`"], []).append(row)
        assert len(by_status[SKIPPED]) == sum(r.status == SKIPPED for r in recs)
        # best mAP first; a SKIPPED job has none and comes last
        maps = [float(r["metrics.`map50_95`"]) for r in by_status[FINISHED]]
        assert maps == sorted(maps, reverse=True)
        assert rows[-1]["tags.`qexp.status`"] == SKIPPED
        # MLflow's status icon of a SKIPPED job is the finished one, not KILLED's
        assert {r["icon"] for r in rows} == {by_status[FINISHED][0]["icon"]}
        # durations are the jobs' (minutes of evaluation), not the milliseconds of logging
        took = sorted(r.duration_s for r in recs if r.status == FINISHED)
        shown = sorted(_seconds(r["duration"]) for r in by_status[FINISHED])
        assert shown == pytest.approx(took, rel=0.05, abs=0.1)

        chrome.js(CLICK_JS % "mlflow.experiment_page.shared_view.dismiss")
        time.sleep(1)
        png = shoot(chrome, tmp_path / "mlflow_runs.png")
        if os.environ.get(UPDATE_ENV):
            shutil.copy(png, DOCS_IMG / "mlflow_runs.png")

        # the experiment list: qexp's experiment, not MLflow's empty Default beside it
        base = link.split("/#/")[0]
        chrome.goto(f"{base}/#/experiments?workflowType=machine_learning", settle_s=1)
        assert chrome.wait_for(f"document.body.innerText.includes('{EXPERIMENT}')", 60)
        names = chrome.js(
            "[...document.querySelectorAll('a[href*=\"experiments/\"]')]"
            ".map(a => a.innerText.trim()).filter(Boolean)"
        )
        assert EXPERIMENT in names and "Default" not in names, names

    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1400, 900)
