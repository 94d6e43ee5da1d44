"""``hydra/sweeper=qexp_search``: Hydra's Optuna sweeper with qexp's objective.

hydra-optuna-sweeper asks Optuna for trials, turns them into overrides and launches them; it
reads each trial's value from the task's return. qexp's jobs return nothing: their result is
the record. This sweeper keeps the Optuna sweeper's search-space syntax, storage and loop, and
adds what a recipe search needs around it:
  - the reference row (``reference`` overrides, e.g. quantizer=none) runs first, as job 0 of
    the sweep, with the trials' fixed overrides; trials are jobs 1..N;
  - each trial's value is its speedup over the reference, read from its record
    (qexp/search/objective.py), and the mAP loss minus the budget is its Optuna constraint
    (TPE's ``constraints_func``), so the study favours fast recipes within budget;
  - ``conditional``: parameters that exist only under a choice (``ignore.k`` under
    ``ignore=sensitivity_topk``), so that no two trials differ only in an unread option;
  - a persistent study: ``n_trials`` is the study's total, so re-running a stopped search
    runs only the trials it lacks, and every trial that repeats a FINISHED job is free
    (qexp's resume by config hash), also from another sweep dir or machine with the records;
  - ``enqueue``: recipes tried first in a new study (the best hand-written row), so the
    search is measured beside it in the same sweep and starts from what is known;
  - a progress line per trial, and at the end the search summary, the best recipe as a
    ``recipe/<name>.yaml``, its MLflow tags and the report page (qexp/search/finish.py).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import DictConfig, OmegaConf

from qexp.record import Record, read_record
from qexp.search import finish
from qexp.search.objective import Score, score

log = logging.getLogger("qexp")
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
INTERRUPTED = "interrupted: the search stopped before it finished; run again"


def requeue_interrupted(study: optuna.Study) -> int:
    """Trials a stopped search left RUNNING (a process killed mid-wave, a GPU lease that ended)
    are closed as FAIL, marked interrupted (they don't count towards ``n_trials``), and their
    recipes enqueued again, first: the re-run tries them before sampling new ones, and a job
    that had finished is reused from its record. A search started here owns no trial yet, so
    every RUNNING trial belongs to a stopped one (two searches on one study at once are not
    supported)."""
    stale = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    for t in stale:
        study.enqueue_trial(t.params)
        study._storage.set_trial_user_attr(t._trial_id, "why", INTERRUPTED)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(stale)


def trials_done(study: optuna.Study) -> int:
    """Finished trials (COMPLETE or FAIL), but the interrupted ones re-run by the next search."""
    return sum(t.state in DONE and t.user_attrs.get("why") != INTERRUPTED for t in study.trials)


def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    """TPE's constraint: mAP loss - budget (<= 0 within budget); a failed trial violates it."""
    c = trial.user_attrs.get("constraint")
    return [1e6 if c is None else float(c)]


def job_dir_of(ret: JobReturn) -> Path:
    hc = ret.hydra_cfg
    assert hc is not None  # Hydra's launchers fill it in
    out = OmegaConf.select(hc, "hydra.runtime.output_dir") or OmegaConf.select(
        hc, "runtime.output_dir"
    )
    return Path(str(out))


class _Impl(OptunaSweeperImpl):
    """The Optuna sweeper's loop; trials scored from their records (see the module doc)."""

    def __init__(self, owner: Search, **kw: Any) -> None:
        super().__init__(**kw)
        self.owner = owner
        self.custom_search_space_extender = self._conditional
        self.pending: list[optuna.trial.Trial] = []

    def _conditional(self, cfg: DictConfig, trial: optuna.trial.Trial) -> None:
        for when, params in (self.owner.conditional or {}).items():
            key, _, choice = str(when).partition("=")
            if str(trial.params.get(key, self.owner.fixed.get(key))) != choice:
                continue
            dists, fixed = create_params_from_overrides([f"{k}={v}" for k, v in params.items()])
            for name, dist in dists.items():
                trial._suggest(name, dist)
            for name, value in fixed.items():
                trial.set_user_attr(f"fixed:{name}", value)

    def _configure_trials(self, trials, search_space_distributions, fixed_params):  # type: ignore[no-untyped-def]
        self.pending = list(trials)
        overrides = super()._configure_trials(trials, search_space_distributions, fixed_params)
        # conditional fixed values (a choice's options that are not searched) go along too
        return [
            tuple(o)
            + tuple(
                f"{k.removeprefix('fixed:')}={v}"
                for k, v in t.user_attrs.items()
                if k.startswith("fixed:")
            )
            for o, t in zip(overrides, trials, strict=True)
        ]


class _ScoredLauncher:
    """The real launcher; each return's value replaced by the trial's score."""

    def __init__(self, owner: Search, launcher: Any) -> None:
        self.owner, self.launcher = owner, launcher

    def launch(self, overrides: list[Any], initial_job_idx: int) -> list[JobReturn]:
        o = self.owner
        if o.ref is None:  # the first wave: the reference row (job 0) runs beside its trials
            rets = self.launcher.launch([o.reference_overrides(), *overrides], initial_job_idx=0)
            o.ref = o.reference_record(rets[0])
            rets = rets[1:]
        else:
            rets = self.launcher.launch(overrides, initial_job_idx=initial_job_idx + 1)
        for trial, ret in zip(o.impl.pending, rets, strict=True):
            s = o.score_of(ret)
            for k, v in s.attrs().items():
                trial.set_user_attr(k, v)
            trial.set_user_attr("overrides", list(ret.overrides or []))
            if s.speedup is None:
                ret.status = JobStatus.FAILED
                ret.return_value = RuntimeError(f"trial {trial.number}: {s.why}")
            else:
                ret.status = JobStatus.COMPLETED
                ret.return_value = s.speedup
            o.progress(trial, s)
        return list(rets)


class Search:
    """The search behind the ``hydra/sweeper=qexp_search`` plugin
    (hydra_plugins/qexp_search, conf/hydra/sweeper/qexp_search.yaml)."""

    def __init__(
        self,
        storage: str,
        study_name: str,
        n_trials: int = 20,
        n_jobs: int = 1,
        seed: int = 0,
        n_startup_trials: int = 8,
        budget_pt: float = 0.3,
        strict: bool = False,
        metric: str = "auto",
        resamples: int = 300,
        reference: list[str] | None = None,
        conditional: dict[str, dict[str, str]] | None = None,
        params: dict[str, str] | None = None,
        recipe_name: str = "search_best",
        recipe_dir: str | None = None,
        max_failure_rate: float = 1.0,
        enqueue: list[dict[str, Any]] | None = None,
    ) -> None:
        self.budget_pt, self.strict, self.metric = float(budget_pt), bool(strict), str(metric)
        self.resamples, self.total = int(resamples), int(n_trials)
        self.reference = list(reference or ["quantizer=none"])
        self.conditional = {str(k): dict(v) for k, v in (conditional or {}).items()}
        self.recipe_name, self.recipe_dir = str(recipe_name), recipe_dir
        self.enqueue = [dict(e) for e in (enqueue or [])]
        self.fixed: dict[str, Any] = {}
        self.ref: Record | None = None
        # constraints_func is "experimental" in Optuna since 2.5; its interface is all we use
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # Optuna 5 deprecates it for Trial.set_constraint (removal in 7); Optuna 4 lacks that
        warnings.filterwarnings("ignore", message=".*constraints_func.*", category=FutureWarning)
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=n_startup_trials, constraints_func=constraints
        )
        self.impl = _Impl(
            self,
            sampler=sampler,
            direction="maximize",
            storage=storage,
            study_name=study_name,
            n_trials=n_trials,
            n_jobs=n_jobs,
            max_failure_rate=max_failure_rate,
            search_space=None,
            custom_search_space=None,
            params=OmegaConf.create(dict(params or {})),
        )

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config = config
        self.impl.launcher = _ScoredLauncher(self, self.impl.launcher)  # type: ignore[assignment]

    def score_of(self, ret: JobReturn) -> Score:
        assert self.ref is not None
        job_dir = job_dir_of(ret)
        try:
            rec = read_record(job_dir)
        except ValueError as e:  # the job died before its record: a crash of the process
            return Score("FAILED", str(job_dir), why=str(e))
        return score(rec, self.ref, self.budget_pt, self.strict, self.metric, self.resamples)

    def progress(self, trial: optuna.trial.Trial, s: Score) -> None:
        print(finish.progress_line(self, trial.number, s), flush=True)

    def reference_overrides(self) -> tuple[str, ...]:
        """The reference row's command line: the sweep's fixed overrides, the reference's own."""
        keys = {r.partition("=")[0] for r in self.reference}
        return tuple([f"{k}={v}" for k, v in self.fixed.items() if k not in keys] + self.reference)

    def reference_record(self, ret: JobReturn) -> Record:
        rec = read_record(job_dir_of(ret))
        if rec.status != "FINISHED":
            why = (rec.error or rec.reason or "").strip().splitlines()
            raise RuntimeError(
                f"the reference row ({' '.join(self.reference)}) did not finish in "
                f"{rec.job_dir}: {why[0] if why else rec.status}; no trial can be scored"
            )
        return rec

    def _run_reference(self) -> Record:
        """The reference alone (job 0): when no trial is left to run beside it (a finished
        search re-run for its report: the reference is then a reused record)."""
        launcher = self.impl.launcher.launcher  # type: ignore[union-attr]
        (ret,) = launcher.launch([self.reference_overrides()], initial_job_idx=0)
        return self.reference_record(ret)

    def sweep(self, arguments: list[str]) -> None:
        # the reference row (fp32 on ORT, fp16 on TensorRT) is built beside the first wave of
        # trials (_ScoredLauncher), not before it: on TensorRT its cold build is a wave's length
        overrides = self.impl._parse_sweeper_params_config() + list(arguments)
        self.fixed = create_params_from_overrides(overrides)[1]
        self.ref = None
        study = optuna.create_study(
            study_name=self.impl.study_name,
            storage=self.impl.storage,
            sampler=self.impl.sampler,
            direction="maximize",
            load_if_exists=True,
        )
        if not study.trials:  # a new study: the known recipes first, then the sampler's
            for params in self.enqueue:
                study.enqueue_trial(params)
        requeued = requeue_interrupted(study)
        if requeued:
            print(f"search {study.study_name}: {requeued} interrupted trials run again", flush=True)
        done = trials_done(study)
        self.impl.n_trials = max(0, self.total - done)
        if done:
            print(
                f"search {study.study_name}: {done} of {self.total} trials done in "
                f"{self.impl.storage}; running {self.impl.n_trials} more",
                flush=True,
            )
        if self.impl.n_trials:
            try:
                self.impl.sweep(arguments)
            except ValueError as e:  # the Optuna sweeper's study.best_trial: none completed
                if "trials are completed" not in str(e):
                    raise
        if self.ref is None:
            self.ref = self._run_reference()
        finish.finish(
            self, optuna.load_study(study_name=study.study_name, storage=str(self.impl.storage))
        )
