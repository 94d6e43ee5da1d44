"""The recipe search's pieces on the records of a real 3-trial search (tests/fixtures/
search_tiny: `qexp experiment=int8_search` on 4 tiny images, ORT qlinear, its search.json):
scores recomputed from the records, the recipe it wrote, its page and summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qexp.record import FAILED, SKIPPED, Equivalent, read_record
from qexp.report import search_page
from qexp.search.finish import label, recipe_text, summary_lines
from qexp.search.objective import measured, score

FIXTURE = Path(__file__).parents[2] / "fixtures" / "search_tiny"


@pytest.fixture
def search(tmp_path):
    """The fixture's records with their job dirs where they now are (a copy in tmp_path)."""
    root = tmp_path / "sweep"
    shutil.copytree(FIXTURE, root)
    recs = {}
    for j in ("0", "1", "2", "3"):
        r = read_record(root / j).replace(job_dir=str(root / j), resumed_from=None)
        r.write(root / j)
        recs[j] = r
    doc = json.loads((root / "search.json").read_text())
    return root, recs, doc


def test_each_trial_scores_as_the_search_stored_it(search):
    root, recs, doc = search
    ref = recs["0"]
    assert ref.choices["quantizer"] == "none"
    for t in doc["trials"]:
        rec = recs[Path(t["job_dir"]).name]
        s = score(rec, ref, budget_pt=doc["budget_pt"])
        assert s.speedup == pytest.approx(t["speedup"], rel=1e-12)
        assert s.loss_pt == pytest.approx(t["loss_pt"], abs=1e-12)
        assert list(s.ci_pt) == pytest.approx(t["ci_pt"], abs=1e-12)  # seeded bootstrap
        assert s.metric == "latency_ms_p50" and s.feasible
        # a tight budget: within it or not by the loss; strict: by the interval's far end
        tight = score(rec, ref, budget_pt=0.5)
        assert tight.feasible == (t["loss_pt"] <= 0.5)
        strict = score(rec, ref, budget_pt=0.5, strict=True)
        assert strict.feasible == (-t["ci_pt"][0] <= 0.5)
        assert strict.feasible <= tight.feasible or t["loss_pt"] > -t["ci_pt"][0]


def test_a_repeat_is_scored_as_the_job_it_repeats_and_a_failure_says_why(search):
    root, recs, doc = search
    ref, trial = recs["0"], recs["1"]
    twin = trial.replace(
        status=SKIPPED, metrics={}, equivalent_to=Equivalent(trial.job_dir, "FINISHED")
    )
    assert measured(twin) == trial
    assert score(twin, ref, 1.0).speedup == score(trial, ref, 1.0).speedup
    failed = trial.replace(status=FAILED, metrics={}, error="RuntimeError: boom\ntraceback")
    s = score(failed, ref, 1.0)
    assert s.speedup is None and s.why == "RuntimeError: boom" and not s.feasible


def test_the_recipe_it_wrote_composes_to_the_best_trial(search, compose, tmp_path):
    root, recs, doc = search
    best = doc["best"]
    text = recipe_text(best, doc["study"], doc["budget_pt"])
    assert text == (FIXTURE / "search_ci.yaml").read_text()
    conf = tmp_path / "conf" / "recipe"
    conf.mkdir(parents=True)
    (conf / "found.yaml").write_text(text)
    cfg = compose([f"hydra.searchpath=[file://{conf.parent}]", "recipe=found"])
    # the same job as the trial's own overrides make
    assert cfg == compose([f"{k}={v}" for k, v in best["params"].items()])
    assert cfg != compose([])
    assert label(best["params"]) == best["label"]


def test_the_page_and_the_summary(search):
    root, recs, doc = search
    files = search_page.write(root, doc)
    assert [f.name for f in files] == ["search.md", "search.png"]
    md = files[0].read_text()
    for t in doc["trials"]:
        assert f"`{t['label']}`" in md
    assert "best within budget: trial 1" in md and "NOT faster" in md
    lines = summary_lines(doc)
    assert lines[0].startswith("search search_ci: 3 trials, 3 scored")
    assert "no INT8 recipe beats the reference here" in lines[1]  # 0.99x on 4 images
