"""What a qexp experiment looks like when opened in the MLflow UI.

MLflow 3 decides the page from the browser, not from the experiment: its UI starts in the
GenAI workflow (traces, an empty overview) unless the URL says ``workflowType=machine_learning``
or the user flipped the sidebar toggle, and its runs table starts with Source/Models/Dataset
columns. What it does read from the experiment is a *saved view*: an experiment tag
``mlflow.sharedViewState.<key>`` holding ``{"name", "createdAt", "updatedAt", "state"}``,
listed under the runs page's "Views" menu and opened by ``?viewStateShareKey=<key>``.
So every qexp experiment carries one view, "qexp: jobs by mAP" (the jobs, best mAP first,
status / mAP / latency / axis columns), and :func:`runs_url` is the link that opens it in
the training view; ``qexp.ui`` prints it.

MLflow's own empty ``Default`` experiment sits beside qexp's ``default`` and reads as the
same; :func:`hide_empty_default` soft-deletes it in stores qexp owns (restore it with
``mlflow experiments restore --experiment-id 0``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from qexp.config.axes import AXES

log = logging.getLogger("qexp")

VIEW_KEY = "qexp"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "qexp: jobs by mAP"
NOTE_TAG = "mlflow.note.content"  # the experiment's (and a run's) description in the UI
KIND_TAG = "mlflow.experimentKind"  # read by MLflow 3 releases that honour it
DEFAULT_EXPERIMENT_ID = "0"

# The first columns a reader needs: what happened, how long, how accurate, how fast, which
# choices (the axes sweeps vary most first), then which sweep and why a job did not finish.
STATUS_COLUMN = "tags.`qexp.status`"
METRIC_COLUMNS = ("map50_95", "map50", "latency_ms_p50", "latency_ms_p90")
AXIS_ORDER = ("quantizer", "observer", "calibrator", "ignore", "backend", "model", "data")
assert sorted(AXIS_ORDER) == sorted(AXES), "a new axis needs its place in AXIS_ORDER"
TAG_COLUMNS = ("qexp.sweep", "qexp.reason")
# the Duration attribute is selected by this key but placed by its grid column id
DURATION_SELECTED, DURATION_ID = "attributes.`Duration`", "duration"
# px; MLflow's 100 px default cuts "latency_ms_p50" and pushes the axes past a 1400 px window
COLUMN_WIDTHS = {
    STATUS_COLUMN: 95,
    DURATION_ID: 85,
    "metrics.`map50_95`": 100,
    "metrics.`map50`": 80,
    "metrics.`latency_ms_p50`": 118,
    "metrics.`latency_ms_p90`": 118,
}


def view_state() -> dict[str, Any]:
    """The runs-table state of the qexp view (keys as MLflow's UI stores them)."""
    rest = [f"metrics.`{m}`" for m in METRIC_COLUMNS]
    rest += [f"params.`{a}`" for a in AXIS_ORDER]
    rest += [f"tags.`{t}`" for t in TAG_COLUMNS]
    return {
        # jobs only, flat: sorting by a metric (not start time) lists child runs without
        # folding them under their sweep's parent run
        "searchFilter": "tags.`qexp.kind` = 'job'",
        "orderByKey": "metrics.`map50_95`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": [STATUS_COLUMN, DURATION_SELECTED, *rest],
        "columnOrder": [STATUS_COLUMN, DURATION_ID, *rest],
        "columnWidths": COLUMN_WIDTHS,
        "runsHiddenMode": "SHOW_ALL",
        "groupBy": None,
        "groupsExpanded": {},
        "hideEmptyCharts": True,
    }


def view_tag_value(now_ms: int | None = None) -> str:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    state = json.dumps(view_state(), sort_keys=True)
    return json.dumps(
        {"name": VIEW_NAME, "createdAt": now_ms, "updatedAt": now_ms, "state": state},
        sort_keys=True,
    )


def _same_view(value: str | None) -> bool:
    try:
        saved = json.loads(value or "")
        return saved.get("name") == VIEW_NAME and json.loads(saved["state"]) == view_state()
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def experiment_tags(name: str) -> dict[str, str]:
    """Tags a new qexp experiment is created with."""
    return {
        KIND_TAG: "custom_model_development",
        VIEW_TAG: view_tag_value(),
        NOTE_TAG: description(name),
    }


def description(name: str) -> str:
    return (
        f"qexp: a parent run per sweep, a child run per job. **{VIEW_NAME}** (Views) lists the "
        f"jobs; `qexp report --experiment {name}` prints their table."
    )


def ensure_view(client: Any, experiment: Any) -> None:
    """Give an experiment (created by an older qexp, or by hand) the qexp view and note."""
    tags = dict(experiment.tags or {})
    if not _same_view(tags.get(VIEW_TAG)):
        client.set_experiment_tag(experiment.experiment_id, VIEW_TAG, view_tag_value())
    if not tags.get(NOTE_TAG):
        client.set_experiment_tag(experiment.experiment_id, NOTE_TAG, description(experiment.name))


def hide_empty_default(client: Any) -> bool:
    """Soft-delete MLflow's own ``Default`` experiment when it holds no run; True if hidden."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    try:
        exp = client.get_experiment(DEFAULT_EXPERIMENT_ID)
        if exp.lifecycle_stage != "active":
            return False
        if client.search_runs([DEFAULT_EXPERIMENT_ID], max_results=1, run_view_type=ViewType.ALL):
            return False  # someone logs there: leave it
        client.delete_experiment(DEFAULT_EXPERIMENT_ID)
        log.debug("hid MLflow's empty 'Default' experiment (qexp logs to its own experiments)")
        return True
    except MlflowException as e:  # a store without one, or a server that refuses: harmless
        log.debug("MLflow's Default experiment left as is: %s", e)
        return False


def runs_url(base_url: str, experiment_id: str) -> str:
    """The experiment's runs in MLflow's training view, opened on the qexp view."""
    return (
        f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"
    )
