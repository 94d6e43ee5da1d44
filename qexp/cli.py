"""`qexp [overrides]` runs a job (`-m` a sweep); `qexp report|ingest|server ...` are subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from qexp import offline

CONF_DIR = Path(__file__).resolve().parent / "conf"
log = logging.getLogger("qexp")
_failed_jobs: list[str] = []


def _task(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from qexp import gpus
    from qexp.config.schema import AXES
    from qexp.record import FAILED
    from qexp.runner import JobSpec, run_job

    hc = HydraConfig.get()
    logging.getLogger("qexp").setLevel(cfg.log_level)
    multirun = hc.mode == RunMode.MULTIRUN
    # a parallel launcher on a multi-GPU host: this job process takes one GPU for itself
    gpus.claim_for_launcher(hc.launcher.get("n_jobs") if multirun else None)
    spec = JobSpec(
        job_dir=Path(hc.runtime.output_dir),
        choices={a: str(hc.runtime.choices.get(a)) for a in AXES},
        overrides=tuple(hc.overrides.task),
        sweep_id=str(Path(hc.sweep.dir).resolve()) if multirun else None,
        job_name=f"{hc.job.name}#{hc.job.num}" if multirun else hc.job.name,
    )
    record = run_job(cfg, spec)
    if record.status == FAILED and not multirun:  # a sweep goes on and reports its failures
        _failed_jobs.append(record.job_dir)


def _run_hydra() -> int:
    import hydra

    from qexp.config.store import register_configs

    register_configs()
    main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(_task)
    main()
    return 1 if _failed_jobs else 0


def _ingest(argv: list[str]) -> int:
    from qexp.tracking.ingest import ingest

    p = argparse.ArgumentParser(
        prog="qexp ingest", description="Log result records under DIR to MLflow (idempotent)."
    )
    p.add_argument("dirs", nargs="+", type=Path, help="job or sweep dirs holding result.json")
    p.add_argument("--uri", help="tracking URI (default: sqlite:///outputs/mlflow.db)")
    p.add_argument("--experiment", help="log into this experiment instead of the record's own")
    a = p.parse_args(argv)
    n = ingest(a.dirs, uri=a.uri, experiment=a.experiment)
    print(f"ingested {n.logged} new, {n.present} already present, {n.skipped} not loggable")
    return 0


def _report(argv: list[str]) -> int:
    from qexp.report.cli import main as report_main

    return report_main(argv)


def _server(argv: list[str]) -> int:
    from qexp.server import main as server_main

    return server_main(argv)


SUBCOMMANDS = {"ingest": _ingest, "report": _report, "server": _server}


def main() -> int:
    offline.setup()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        cmd = sys.argv[1]
        return SUBCOMMANDS[cmd](sys.argv[2:])
    return _run_hydra()


if __name__ == "__main__":
    sys.exit(main())
