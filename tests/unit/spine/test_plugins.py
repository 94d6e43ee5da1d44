"""Adding a quantizer or an observer is one module plus one YAML: the toy ones of
tests/unit/spine/plugins/ are named in $QEXP_PLUGINS, their YAMLs found in a config dir of
their own, and a job runs with each on ONNX Runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from qexp.config.validate import ConfigError, validate
from qexp.config_store import register_configs
from qexp.record import FINISHED, find_records, read_record
from qexp.registry import OBSERVERS, QUANTIZERS
from qexp.runner import JobSpec, combination_reason, run_job
from tests.conftest import ASSETS, CHEAP_JOB, CONF, ROOT

PLUGINS = ROOT / "tests" / "unit" / "spine" / "plugins"
MODULES = ("tests.unit.spine.plugins.toy_quantizer", "tests.unit.spine.plugins.toy_observer")


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """compose(overrides) with the toy plugins loaded the way a user loads theirs; they are
    unregistered afterwards."""
    monkeypatch.setenv("QEXP_PLUGINS", ",".join(MODULES))
    register_configs()

    def _compose(overrides):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(
                "config",
                [f"hydra.searchpath=[file://{PLUGINS / 'conf'}]", "tracking=none",
                 f"paths.output_dir={tmp_path / 'outputs'}", *CHEAP_JOB, *overrides],
            )  # fmt: skip

    yield _compose
    QUANTIZERS.remove("toy_round")
    OBSERVERS.remove("toy")
    for m in MODULES:
        sys.modules.pop(m, None)


def _run(cfg, job_dir):
    rec = run_job(cfg, JobSpec(job_dir=job_dir, choices={}))
    assert rec.status == FINISHED, rec.error or rec.reason
    return rec


def test_options_of_a_new_plugin_are_checked_like_qexp_own(toy):
    with pytest.raises(ConfigError, match=r"quantizer\.levels=1: must be >= 2"):
        validate(toy(["quantizer=toy_round", "quantizer.levels=1"]))
    with pytest.raises(ConfigError, match=r"observer\.fraction=2\.0: must be <= 1"):
        validate(toy(["quantizer=ptq", "observer=toy", "observer.fraction=2"]))
    # what it declares it makes is checked like qexp's own quantizers' declarations
    reason = combination_reason(validate(toy(["quantizer=toy_round", "quantizer.precision=int8"])))
    assert reason.startswith("quantizer=toy_round makes fp32 by route float;")


@pytest.mark.assets
def test_a_toy_quantizer_runs_a_job_on_onnxruntime(tmp_path):
    """Through the CLI, as a user would: the module named in $QEXP_PLUGINS, the YAML in a
    --config-dir of theirs."""
    out = tmp_path / "outputs"
    env = dict(os.environ, QEXP_PLUGINS=MODULES[0], QEXP_ASSETS=str(ASSETS))
    cmd = [sys.executable, "-m", "qexp.cli", "--config-dir", str(PLUGINS / "conf"),
           "quantizer=toy_round", "quantizer.levels=15", "tracking=none", *CHEAP_JOB,
           f"paths.output_dir={out}"]  # fmt: skip
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (rec,) = [read_record(r) for r in find_records(out / "runs")]
    # the recorded choice names the option the command line overrode (what ran)
    assert rec.status == FINISHED and rec.choices["quantizer"] == "toy_round+levels=15"
    assert rec.info["toy_round"] == {"convs": 64, "levels": 15}
    assert rec.info["route"] == "float" and rec.info["precision"] == "fp32"
    assert 0 < rec.metrics["map50_95"] <= 1 and rec.metrics["latency_ms_p50"] > 0
    assert rec.config["quantizer"]["levels"] == 15  # its option is part of the job's config


@pytest.mark.assets
def test_a_toy_observer_sets_the_ranges_of_a_ptq_job(toy, tmp_path):
    ptq = ["quantizer=ptq", "data.calib.num=2"]
    minmax = _run(toy([*ptq, "observer=minmax"]), tmp_path / "minmax")
    half = _run(toy([*ptq, "observer=toy", "observer.fraction=0.5"]), tmp_path / "toy")
    assert half.info["observer"] == {"act": "toy", "weight": "minmax"}
    assert half.info["calib_cache"] == "hit"  # the same calibration pass as minmax's
    full, got = minmax.info["act_amax"], half.info["act_amax"]
    assert got.keys() == full.keys() and len(got) == 63
    assert all(got[n] == pytest.approx(full[n] / 2, rel=1e-5, abs=1e-6) for n in full)
    assert 0 <= half.metrics["map50_95"] <= 1
    # the minmax job's axis has no `fraction`: its plot's toy clip takes toy's schema default
    doc = json.loads((Path(minmax.job_dir) / minmax.artifacts["calibration"]).read_text())
    clips = next(iter(doc["tensors"].values()))["clips"]
    assert clips["toy"] == pytest.approx(0.5 * clips["minmax"])
