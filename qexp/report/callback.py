"""A Hydra callback: when a sweep ends, print its table (and paper comparison), write the
HTML report into the sweep dir, and log it to the sweep's MLflow parent run.

Enabled by ``hydra.callbacks.qexp_report._target_: qexp.report.callback.SweepReport``
(conf/config.yaml sets it for every sweep).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("qexp")


class SweepReport(Callback):
    def __init__(self, html: bool = True, log_parent: bool = True) -> None:
        self.html = html
        self.log_parent = log_parent

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._report(config)
        except Exception as e:  # noqa: BLE001 - the sweep's records are safe; say how to retry
            log.warning(
                "sweep report failed (%s: %s); run `qexp report --records %s` to retry",
                type(e).__name__,
                e,
                config.hydra.sweep.dir,
            )

    def _report(self, config: DictConfig) -> None:
        from qexp.report.build import build
        from qexp.report.load import from_records

        sweep_dir = Path(str(config.hydra.sweep.dir))
        df = from_records(sweep_dir)
        if df.empty:
            log.warning("no result records under %s; no report", sweep_dir)
            return
        rep = build(df, str(config.experiment_name))
        md = rep.markdown(plots_dir="report" if self.html else None)
        (sweep_dir / "report.md").write_text(md + "\n")
        print(f"\n{md}\n")
        if self.html:
            rep.write(sweep_dir / "report" / "report.html")
            print(f"report: {sweep_dir / 'report' / 'report.html'}")
        uri = config.tracking.get("uri") if config.tracking.name != "none" else None
        if self.log_parent and uri:
            from qexp.report.publish import log_report
            from qexp.tracking.mlflow_server import TrackingServerDown, ensure_answering

            if str(uri).startswith(("http://", "https://")):
                try:  # MLflow's client would retry for minutes; the report is on disk already
                    ensure_answering(str(uri), float(config.tracking.get("health_timeout_s", 5.0)))
                except TrackingServerDown as e:
                    log.warning(
                        "%s: the report was not logged to MLflow (`qexp ingest %s` logs the "
                        "records once it is back)",
                        e,
                        sweep_dir,
                    )
                    return

            for msg in log_report(rep, df, str(uri)):
                log.info("%s", msg)
