"""The `qexp` command as a user meets it: help, typos, --config-dir, exit codes, Ctrl-C, the
lines a job and a sweep end with. Real subprocesses, real Hydra, a cheap real job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qexp.record import FAILED, FINISHED, RUNNING, find_records, read_record
from tests.conftest import ASSETS, CHEAP_JOB, CONF, ROOT

TINY = [*CHEAP_JOB, "tracking=none"]
FIXTURE = ROOT / "tests" / "fixtures" / "sweep_cpu_observers"


def _qexp_bare(*args: str, cwd=ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    """`qexp ARGS` exactly as typed (no output-dir overrides added)."""
    env = dict(os.environ, QEXP_ASSETS=str(ASSETS), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "qexp.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Command lines that load qexp's plugins (torch, ultralytics: seconds each) and stop before any
# job runs: one subprocess types them all at the `qexp` entry point's main() (what
# `sys.exit(main())` exits with), instead of one interpreter each.
DRIVER = """
import contextlib, io, json, sys
from qexp.cli import main
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    sys.argv = ["qexp", *argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main()
        except SystemExit as e:  # Hydra's own flags (--hydra-help) exit from inside
            code = e.code
    results[name] = [code, out.getvalue(), err.getvalue()]
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    """(dir, {name: (exit code, stdout, stderr)}) of the command lines in CASES' shape, typed in
    one subprocess (DRIVER); the config dirs and files they name are made in dir."""
    d = tmp_path_factory.mktemp("typed")
    text = (CONF / "model" / "yolov8n.yaml").read_text()
    mine = d / "myconf" / "model"
    mine.mkdir(parents=True)
    (mine / "yolov8n.yaml").write_text(text + "imgsz: 320\n")  # an edited packaged YAML
    (mine / "mine.yaml").write_text(text.replace("name: yolov8n", "name: mine"))
    bad = d / "badconf" / "model"
    bad.mkdir(parents=True)  # a misspelt key in a user's YAML
    (bad / "mine.yaml").write_text(text.replace("name: yolov8n", "name: mine") + "imgzs: 320\n")
    (d / "a-file").write_text("")
    cases = {name: [a.format(d=d) for a in argv] for name, argv in CASES.items()}
    env = dict(os.environ, QEXP_ASSETS=str(ASSETS), PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cases)],
        cwd=d,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return d, json.loads(p.stdout.split("RESULTS ", 1)[1])


OUT = "paths.output_dir={d}/outputs"
CASES = {
    "hydra-help": ["--hydra-help"],
    "cfg": ["--cfg", "job", "model=yolov5n"],
    "config-dir copy": ["--config-dir", "{d}/myconf", "--cfg", "job"],
    "config-dir new": ["--config-dir", "{d}/myconf", "--cfg", "job", "model=mine", "data=tiny"],
    # refused, exit 2 (name: the refusal's one line must name this)
    "unknown choice 'minmx' for observer": [OUT, "observer=minmx"],
    "did you mean minmax?": ["-m", OUT, "observer=minmax,minmx"],
    "model.imgsz=abc": [OUT, "model.imgsz=abc"],
    "Error merging override model.imgsz=abc": ["-m", OUT, "model.imgsz=320,abc"],
    "did you mean weights?": [OUT, "+model.wieghts=x.pt"],
    "quantizer.w_bits=99": [OUT, "quantizer=ptq", "quantizer.w_bits=99"],
    "Key 'imgzs' not in": ["--config-dir", "{d}/badconf", OUT, "model=mine"],
    "add -m": [OUT, "observer=minmax,entropy"],
    "paths.output_dir={d}/a-file/x: cannot write there": ["paths.output_dir={d}/a-file/x"],
    "cannot write there": ["-m", "paths.output_dir={d}/a-file/x", "quantizer=none,fp16"],
}
REFUSED = list(CASES)[4:]


# --- 10: help ----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_lists_commands_axes_and_examples(flag):
    p = _qexp_bare(flag)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "Powered by Hydra" not in out and "schema/" not in out
    for cmd in ("qexp report", "qexp ingest", "qexp server", "qexp -m"):
        assert cmd in out
    # every axis with every choice under conf/ (read from the files, not from a list here)
    block = out.split("axes (", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    axes: dict[str, str] = {}
    for ln in block:
        if ln[2] != " ":
            name, _, rest = ln.strip().partition(" ")
            axes[name] = rest
        else:
            axes[name] += " " + ln.strip()
    for axis_dir in (d for d in CONF.iterdir() if d.is_dir()):
        for sub in [axis_dir] if axis_dir.name != "hydra" else list(axis_dir.iterdir()):
            group = sub.relative_to(CONF).as_posix()
            listed = {c.strip(" *") for c in axes[group].split(":")[-1].split(",")}
            assert listed == {f.stem for f in sub.glob("*.yaml")}, group
    assert "yolov8n*" in out and "onnxruntime*" in out  # the defaults are marked
    examples = out.split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(examples) == 3 and all(e.strip().startswith("qexp ") for e in examples)


def test_help_of_a_command_and_hydra_flags_still_work(typed):
    p = _qexp_bare("help", "ingest")
    assert p.returncode == 0 and "usage: qexp ingest" in p.stdout
    _, said = typed
    code, out, err = said["hydra-help"]
    assert code == 0 and "--config-dir" in out, err
    code, out, err = said["cfg"]
    assert code == 0, err
    assert "name: yolov5n" in out and "family: yolov5" in out


# --- 2: a misspelt top-level key -----------------------------------------------------------


def test_misspelt_added_key_fails_before_anything_runs(tmp_path):
    p = _qexp_bare("+observr=minmax", f"paths.output_dir={tmp_path}")
    assert p.returncode == 2
    assert "did you mean observer?" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("result.json")), "no job may run"


# --- exit code 2: every command line qexp refuses, in one line, before anything runs -----


@pytest.mark.parametrize("named", REFUSED)
def test_refused_command_lines_exit_2_with_one_named_line(typed, named):
    d, said = typed
    code, _, err = said[named]
    assert code == 2, (CASES[named], code, err)
    # one line (after the plugins' progress line, which only the first case prints)
    lines = [x for x in err.strip().splitlines() if not x.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("qexp: "), err
    assert named.format(d=d) in lines[0]
    assert not list(d.rglob("result.json")), "no job may run"
    assert not (d / "outputs" / "sweeps").exists() and not (d / "outputs" / "runs").exists()


# --- 4: --config-dir, corrupt YAML ---------------------------------------------------------


def test_config_dir_copy_of_a_packaged_yaml_takes_effect(typed):
    _, said = typed
    code, out, err = said["config-dir copy"]
    assert code == 0, err
    assert "imgsz: 320" in out, "the edited copy in --config-dir must win"
    code, out, err = said["config-dir new"]
    assert code == 0, err
    assert "name: mine" in out and "imgsz: 640" in out and "name: tiny" in out


def test_corrupt_yaml_is_named_with_its_line_first(tmp_path):
    mine = tmp_path / "myconf"
    (mine / "model").mkdir(parents=True)
    bad = mine / "model" / "broken.yaml"
    bad.write_text("name: broken\nweights: [unclosed\nimgsz: 320\n")
    p = _qexp_bare("--config-dir", str(mine), "model=broken")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert str(bad) in lines[0] and "line 3" in lines[0]
    assert "Traceback" not in p.stderr


# --- 1 + 11: exit codes, the FINISHED line, the sweep summary ------------------------------


def test_job_ends_with_its_headline_metrics_and_sweep_with_counts(qexp, tmp_path, monkeypatch):
    # a matplotlib without its font cache: it logs building one when the sweep's report plots
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    p = qexp("-m", "quantizer=none,fp16", *TINY)  # FINISHED + SKIPPED: exit code 0
    line = next(ln for ln in (p.stdout + p.stderr).splitlines() if "FINISHED model=" in ln)
    assert "mAP50-95 0." in line and "latency p50" in line and " ms" in line
    assert "2 jobs: 1 FINISHED, 0 FAILED, 1 SKIPPED" in p.stdout
    # no long silence: each slow step says what it is doing, in order
    assert "composing the config" in p.stderr
    steps = (
        "loading model",
        "evaluating onnxruntime on 1 image",
        "timing the forward pass",
        "FINISHED model=",
    )
    at = [p.stdout.index(s) for s in steps]
    assert at == sorted(at), p.stdout
    # names: each job dir has its job.log; a job is <experiment_name>#N; what Hydra did not
    # log itself is not logged under [HYDRA]
    recs = sorted(map(read_record, find_records(qexp.out / "sweeps")), key=lambda r: r.job_name)
    assert [r.job_name for r in recs] == ["default#0", "default#1"]
    for rec in recs:
        assert sorted(x.name for x in Path(rec.job_dir).glob("*.log")) == ["job.log"]
    assert "loading model" in (Path(recs[0].job_dir) / "job.log").read_text()
    hydra = [ln for ln in p.stdout.splitlines() if "[HYDRA]" in ln]
    assert hydra and all(("Launching" in ln or " : " in ln) for ln in hydra), hydra
    assert "fontManager" not in p.stdout + p.stderr


def test_sweep_with_a_failed_job_exits_nonzero_with_counts_and_summary(qexp):
    bad = "/nonexistent/weights.pt"
    p = qexp(
        "-m",
        f"model.weights={bad},${{paths.assets}}/weights/yolov8n-coco-from-ovint8.pt",
        "quantizer=none,fp16",
        "~hydra.callbacks.qexp_report",  # the summary must not need the report callback
        *TINY,
        check=False,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    recs = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    assert sorted(r.status for r in recs) == [FAILED, FINISHED, "SKIPPED", "SKIPPED"]
    summary = p.stdout[p.stdout.index("sweep done:") :]
    assert "4 jobs: 1 FINISHED, 1 FAILED, 2 SKIPPED" in summary
    assert "weights file not found" in summary and "mAP50-95 0." in summary
    assert "qexp report --records" in summary
    assert len(summary.splitlines()) <= 25


def test_ingest_of_a_folder_without_records_exits_nonzero(tmp_path):
    p = _qexp_bare("ingest", str(tmp_path), "--uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert p.returncode == 1 and "ingested 0 new, 0 already present" in p.stdout
    missing = _qexp_bare("ingest", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip() == f"qexp: ingest: no such directory: {tmp_path / 'nope'}"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.db"]  # no store made for it


def _sweep_with_unreadable_records(tmp_path, bad: int = 1, jobs: int | None = None):
    """A copy of a real sweep's records (tests/fixtures/sweep_cpu_observers; its first
    ``jobs``), ``bad`` of them made unreadable (truncated JSON, as a full disk or a copy cut
    short leaves them)."""
    sweep = tmp_path / "sweeps" / "cpu_observers" / "2026-11-26_13-06-50"
    for job in sorted(FIXTURE.glob("*/result.json"))[:jobs]:
        shutil.copytree(job.parent, sweep / job.parent.name)
    paths = sorted(sweep.rglob("result.json"))
    for path in paths[:bad]:
        path.write_text(path.read_text()[:100])
    return sweep, paths[:bad], len(paths) - bad


def test_ingest_exits_1_when_records_are_unreadable(tmp_path):
    sweep, bad, good = _sweep_with_unreadable_records(tmp_path, bad=2, jobs=3)
    p = _qexp_bare("ingest", str(sweep), "--uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert p.returncode == 1, p.stdout + p.stderr
    assert good == 1 and "ingested 1 new" in p.stdout and "2 unreadable" in p.stdout
    for path in bad:
        assert str(path) in p.stderr


def test_a_report_leaves_out_an_unreadable_record_and_says_so(tmp_path):
    sweep, (bad,), _ = _sweep_with_unreadable_records(tmp_path)
    without = tmp_path / "without"  # the same sweep without that job: the table expected
    shutil.copytree(sweep, without)
    shutil.rmtree(without / bad.parent.name)
    for extra in ([], ["--all-sweeps"]):
        p = _qexp_bare("report", "--records", str(sweep), *extra, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert str(bad) in p.stderr and "left out 1 unreadable record(s)" in p.stderr
        table, note = p.stdout.rstrip("\n").rsplit("\n", 1)
        assert note.startswith(
            f"- left out 1 unreadable record(s): cannot read result record {bad}"
        )
        expected = _qexp_bare("report", "--records", str(without), *extra, cwd=tmp_path)
        assert table == expected.stdout.rstrip("\n"), p.stdout


# --- read-only commands write nothing ------------------------------------------------------


def test_read_only_commands_write_nothing_but_what_they_are_asked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = _qexp_bare("report", cwd=empty)  # no store here: say so, do not make one
    assert p.returncode == 2 and "no MLflow store at" in p.stderr, p.stderr
    assert "Default" not in p.stderr
    ui = _qexp_bare("ui", "--port", "0", cwd=empty, timeout=60)  # nothing to show here
    assert ui.returncode == 2 and "pass --output-dir" in ui.stderr, ui.stderr
    assert not list(empty.iterdir())
    # the HTML page holds its plots: the one file asked for, nothing beside it
    page = _qexp_bare("report", "--records", str(FIXTURE), "--format", "html", "--out",
                      "report.html", cwd=empty)  # fmt: skip
    assert page.returncode == 0, page.stderr
    assert [x.name for x in empty.iterdir()] == ["report.html"]
    assert "data:image/png;base64," in (empty / "report.html").read_text()


# --- 5: Ctrl-C -----------------------------------------------------------------------------


def test_ctrl_c_prints_one_line_exits_130_and_keeps_the_record(tmp_path, shared_cache):
    out, sweep = tmp_path / "outputs", tmp_path / "outputs" / "sweeps" / "int"
    cmd = [sys.executable, "-m", "qexp.cli", "-m", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    cmd += [*TINY, f"paths.output_dir={out}", f"paths.cache_dir={shared_cache}"]
    env = dict(os.environ, QEXP_ASSETS=str(ASSETS), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        job1 = sweep / "1" / "result.json"
        while time.monotonic() < deadline and proc.poll() is None:
            if job1.exists() and read_record(job1).status == RUNNING:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole group
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    said = [ln for ln in stderr.splitlines() if ln.startswith("interrupted")]
    assert len(said) == 1, stderr[-3000:]
    assert str(sweep / "1") in said[0] and "1 FINISHED" in said[0] and "re-run" in said[0]
    assert read_record(sweep / "0").status == FINISHED
    killed = read_record(sweep / "1")
    assert killed.status == FAILED and "interrupted" in killed.error


# --- 7: assets from any directory -------------------------------------------------------


def _env_without_assets(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "QEXP_ASSETS"}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


def test_assets_resolve_from_another_directory(tmp_path, shared_cache):
    beside = ROOT.parent / "shared" / "assets"
    if not beside.is_dir():
        pytest.skip(f"no assets beside the repository ({beside}): the default has nothing to find")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = [*TINY, f"paths.output_dir={tmp_path / 'out'}", f"paths.cache_dir={shared_cache}"]
    cmd = [sys.executable, "-m", "qexp.cli", *args]
    ok = subprocess.run(
        cmd, cwd=elsewhere, env=_env_without_assets(), capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    (rec,) = [read_record(r) for r in find_records(tmp_path / "out" / "runs")]
    assert rec.status == FINISHED
    assert rec.config["data"]["root"] == str(beside.resolve() / "coco_val")

    missing = tmp_path / "no-assets-here"
    bad = subprocess.run(
        cmd[:-2] + [f"paths.output_dir={tmp_path / 'out2'}", f"paths.cache_dir={shared_cache}"],
        cwd=elsewhere,
        env=_env_without_assets(QEXP_ASSETS=str(missing)),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    (rec,) = [read_record(r) for r in find_records(tmp_path / "out2" / "runs")]
    assert rec.status == FAILED
    assert "QEXP_ASSETS" in rec.error and str(missing) in rec.error
    assert "QEXP_ASSETS" in bad.stdout + bad.stderr
