"""A sweep's one-screen summary keeps each job's whole cause: no line is cut at a fixed width
(a long path in a reason, a long label), and a repeat says its cause before the job it repeats;
a sweep of SKIPPED jobs only says that nothing was measured. Real records on disk."""

from __future__ import annotations

from qexp.record import FAILED, FINISHED, SKIPPED, Equivalent, Record
from qexp.summary import collect

CLONE = "/home/someone/" + "a-long-nested-path/" * 8 + "qexp"
TRT = f"cannot import tensorrt under {CLONE}/.venv (install it: docs/tensorrt.md); quantizer=no"


def _write(sweep, n: int, status: str, choices: dict, **kw) -> Record:
    job = sweep / str(n)
    job.mkdir(parents=True)
    rec = Record(
        record_id=f"r{n}",
        status=status,
        experiment="e",
        config_hash=f"h{n}",
        choices=choices,
        overrides=[f"{k}={v}" for k, v in choices.items()],
        sweep_id=str(sweep),
        job_dir=str(job),
        **kw,
    )
    rec.write(job)
    return rec


def test_the_cause_is_never_cut(tmp_path):
    sweep = tmp_path / "sweeps" / "e" / "2026-01-01_10-00-00"
    long_label = {"model.weights": "/data/" + "w" * 70 + ".pt", "quantizer": "ptq"}
    done = _write(sweep, 0, FINISHED, {"quantizer": "none", "observer": "minmax"},
                  metrics={"map50_95": 0.25})  # fmt: skip
    _write(sweep, 1, SKIPPED, {"quantizer": "none", "observer": "entropy"},
           reason=f"equivalent to the FINISHED job in {done.job_dir}: quantizer=none does not "
           "use observer", equivalent_to=Equivalent(done.job_dir, FINISHED, ("observer",)))  # fmt: skip
    _write(sweep, 2, SKIPPED, {"quantizer": "fp16", "backend": "tensorrt"}, reason=TRT)
    _write(sweep, 3, FAILED, long_label, error="FileNotFoundError: weights file not found\ntb")
    text = collect(sweep).render()
    assert TRT in text  # whole, its last words too
    assert "FileNotFoundError: weights file not found" in text and "tb" not in text.split("\n")
    assert long_label["model.weights"] in text  # the label is not cut either
    (repeat,) = [line for line in text.splitlines() if line.lstrip().startswith("SKIPPED") and
                 "observer=entropy" in line]  # fmt: skip
    # the cause first, then the job it repeats (one of this sweep: by its number)
    assert repeat.rstrip().endswith(
        "quantizer=none does not use observer: the same job as job 0 of this sweep (FINISHED)"
    )
    assert "nothing was measured" not in text


def test_a_sweep_of_skipped_jobs_says_nothing_was_measured(tmp_path):
    sweep = tmp_path / "s"
    _write(sweep, 0, SKIPPED, {"quantizer": "fp16", "backend": "tensorrt"}, reason=TRT)
    _write(sweep, 1, SKIPPED, {"quantizer": "ptq", "backend": "tensorrt"}, reason=TRT)
    summary = collect(sweep)
    assert summary.ok  # exit code 0: nothing failed (README, exit codes)
    assert "nothing was measured: every job was SKIPPED" in summary.render()
