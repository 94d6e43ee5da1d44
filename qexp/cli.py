"""`qexp [overrides]` runs a job (`-m` a sweep); `qexp report|ingest|server|ui ...` are
subcommands.

Exit codes (the README's table): 0 when every job FINISHED or was SKIPPED (an all-SKIPPED
sweep too: nothing failed); 1 when a job FAILED (for `qexp ingest`: a record could not be
read, or none was found); 2 for a command line or config file refused before anything ran
(an unknown key or choice, a value of the wrong type or out of bounds, an output dir that
cannot be written, a directory that does not exist); 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from qexp import offline, summary
from qexp.preflight import CONF_DIR, UsageError, compose_check, plan

log = logging.getLogger("qexp")
_failed_jobs: list[str] = []
HELP_FLAGS = ("--help", "-h")  # and `qexp help`; Hydra's own page stays at --hydra-help


def _task(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from qexp import gpus
    from qexp.config.axes import AXES
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
    if record.status == FAILED and not multirun:  # a sweep counts its records at the end
        _failed_jobs.append(record.job_dir)


def _run_hydra(argv: list[str]) -> int:
    import hydra

    from qexp.config_store import register_configs

    p = plan(argv)
    summary.LAST = None
    log.info("composing the config (loading qexp's plugins: torch, ultralytics, ONNX)")
    register_configs()
    compose_check(p)  # what Hydra would refuse, refused here in one line (exit 2)
    sys.argv = [sys.argv[0], *p.argv]  # Hydra reads its command line from sys.argv
    main = hydra.main(version_base="1.3", config_path=str(p.config_path), config_name="config")(
        _task
    )
    main()
    if summary.LAST is not None:  # a sweep ran: its one-screen summary, last
        print(f"\n{summary.LAST.render()}", flush=True)
        return 0 if summary.LAST.ok else 1
    return 1 if _failed_jobs else 0


def _ingest(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="qexp ingest", description="Log result records under DIR to MLflow (idempotent)."
    )
    p.add_argument("dirs", nargs="+", type=Path, help="job or sweep dirs holding result.json")
    p.add_argument("--uri", help="tracking URI (default: sqlite:///outputs/mlflow.db)")
    p.add_argument("--experiment", help="log into this experiment instead of the record's own")
    a = p.parse_args(argv)
    missing = [str(d) for d in a.dirs if not d.exists()]
    if missing:  # refused before anything is logged
        raise UsageError(f"ingest: no such directory: {', '.join(missing)}")
    from qexp.tracking.ingest import ingest

    n = ingest(a.dirs, uri=a.uri, experiment=a.experiment)
    line = f"ingested {n.logged} new, {n.present} already present, {n.skipped} not loggable"
    if n.unreadable:
        line += f", {n.unreadable} unreadable (not logged: see the warnings above)"
    print(line)
    # 1: a record could not be read, or there was none at all (a wrong DIR)
    return 1 if n.unreadable or not (n.logged + n.present + n.skipped) else 0


def _report(argv: list[str]) -> int:
    from qexp.report.cli import main as report_main

    return report_main(argv)


def _server(argv: list[str]) -> int:
    from qexp.tracking.server import main as server_main

    return server_main(argv)


def _ui(argv: list[str]) -> int:
    from qexp.tracking.ui import main as ui_main

    return ui_main(argv)


SUBCOMMANDS = {"ingest": _ingest, "report": _report, "server": _server, "ui": _ui}


def _help(argv: list[str]) -> int:
    """`qexp help [COMMAND]`: a command's own options, or the page of qexp.cli_help."""
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](["--help"])
    from qexp import cli_help

    dirs = [CONF_DIR]
    for i, a in enumerate(sys.argv):
        if a in ("--config-dir", "-cd") and i + 1 < len(sys.argv):
            dirs = [Path(sys.argv[i + 1]), CONF_DIR]
    print(cli_help.render(dirs), end="")
    return 0


def interrupted_line(exc: KeyboardInterrupt) -> str:
    """One line after Ctrl-C: what was interrupted, what was kept, how to resume."""
    from qexp.runner import JobInterrupted

    if not isinstance(exc, JobInterrupted):
        return (
            "interrupted: no job was running; the records written so far are kept "
            "(re-run the same command to go on)"
        )
    rec = exc.record
    what = " ".join(f"{k}={v}" for k, v in rec.choices.items())
    kept = "nothing else ran"
    if rec.sweep_id:
        done = summary.collect(Path(rec.sweep_id)).counts
        kept = f"{done.get('FINISHED', 0)} FINISHED record(s) of this sweep kept in {rec.sweep_id}"
    return (
        f"interrupted: job {rec.job_name} ({what}), recorded as FAILED in {rec.job_dir}; {kept}; "
        "resume: re-run the same command (FINISHED jobs are reused, this one runs again)"
    )


def main() -> int:
    offline.setup()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:]
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return SUBCOMMANDS[argv[0]](argv[1:])
        if argv and argv[0] == "help":
            return _help(argv[1:])
        if any(a in HELP_FLAGS for a in argv):
            return _help([])
        return _run_hydra(argv)
    except UsageError as e:
        print(f"qexp: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\n{interrupted_line(e)}", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
