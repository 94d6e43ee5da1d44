"""A search stopped mid-wave leaves RUNNING trials in its Optuna storage; the next run closes
them as interrupted (not counted as done) and tries their recipes again first. Real Optuna,
real sqlite storage."""

from __future__ import annotations

import optuna

from qexp.search.sweeper import INTERRUPTED, requeue_interrupted, trials_done


def test_running_trials_of_a_stopped_search_run_again_first(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    dist = optuna.distributions.CategoricalDistribution(["ptq_trt", "ptq_dr"])
    done = study.ask({"quantizer": dist})
    study.tell(done, 1.2)
    stopped = study.ask({"quantizer": dist})  # the process dies here: RUNNING forever

    # the next search opens the same storage
    again = optuna.load_study(study_name="s", storage=storage)
    assert trials_done(again) == 1
    assert requeue_interrupted(again) == 1
    assert requeue_interrupted(again) == 0  # nothing left RUNNING
    t = again.trials[stopped.number]
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["why"] == INTERRUPTED
    assert trials_done(again) == 1  # the interrupted one does not count towards n_trials
    nxt = again.ask({"quantizer": dist})  # the enqueued recipe comes before any sampled one
    assert nxt.params == {"quantizer": stopped.params["quantizer"]}
