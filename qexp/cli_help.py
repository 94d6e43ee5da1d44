"""`qexp help` / `qexp --help` / `qexp -h`: the commands, the axes with their choices, examples.

The axes and choices are read from the config dirs (the packaged conf/, and a --config-dir),
so a new YAML shows up here without editing this file. Hydra's internal ``schema/*`` groups
are not choices a user makes and are left out.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import yaml

from qexp.config.schema import PathsConfig
from qexp.preflight import CONF_DIR, groups, top_level_keys

# what each group is for; a group without an entry is listed with its choices only
AXIS_HELP = {
    "model": "detector + weights",
    "data": "evaluation + calibration images",
    "quantizer": "how the network becomes INT8 (none/fp16: float baselines)",
    "observer": "how torch-side quantizers pick ranges",
    "calibrator": "TensorRT's own INT8 calibrator (quantizer=trt_builtin)",
    "ignore": "layers kept in float",
    "backend": "where accuracy and latency are measured",
    "tracking": "where records go",
    "experiment": "named sweeps (`qexp experiment=NAME` runs the whole sweep)",
    "paper": "a published table, ours beside theirs",
    "hydra/launcher": "how a sweep's jobs run (default: one after another)",
}
ORDER = list(AXIS_HELP)
HIDDEN = ("schema",)  # filled from the registry for the YAMLs to extend; not a user's choice

COMMANDS = """\
  qexp [OVERRIDE ...]              run one job (the defaults below, changed by AXIS=CHOICE)
  qexp -m [OVERRIDE ...]           run a sweep: every combination of comma-separated choices
  qexp report [OPTIONS]            a sweep's comparison table (md/csv/html/json)
  qexp ingest DIR ...              log result records to MLflow (idempotent)
  qexp server start|stop|status    an mlflow server for parallel sweeps
  qexp ui [--output-dir DIR]       the MLflow UI over ./outputs (where this directory's runs are)
  qexp help [report|ingest|...]    this page, or a command's own options"""

EXAMPLES = """\
  qexp model=yolov5n quantizer=ptq observer=entropy
  qexp -m quantizer=none,ptq observer=minmax,percentile,mse,entropy data.calib.num=32
  qexp report --experiment default --latest"""


def _defaults(primary: Path) -> dict[str, str]:
    """AXIS -> its default choice, from the primary config's defaults list."""
    for d in (primary, CONF_DIR):
        f = Path(d) / "config.yaml"
        if f.is_file():
            doc = yaml.safe_load(f.read_text()) or {}
            out = {}
            for entry in doc.get("defaults") or []:
                if isinstance(entry, dict):
                    for k, v in entry.items():
                        out[str(k).replace("override ", "").strip("/")] = str(v)
            return out
    return {}


def render(dirs: list[Path] | None = None, width: int = 100) -> str:
    dirs = dirs or [CONF_DIR]
    found = {g: c for g, c in groups(dirs).items() if g.split("/")[0] not in HIDDEN}
    defaults = _defaults(dirs[0])
    names = sorted(found, key=lambda g: (ORDER.index(g) if g in ORDER else len(ORDER), g))
    pad = max(len(g) for g in names) + 2
    lines = []
    for g in names:
        choices = ", ".join(c + ("*" if defaults.get(g) == c else "") for c in found[g])
        what = f"{AXIS_HELP[g]}: " if g in AXIS_HELP else ""
        body = textwrap.wrap(what + choices, width=width - pad - 2)
        lines.append(f"  {g:<{pad}}{body[0]}")
        lines += [f"  {'':<{pad}}{b}" for b in body[1:]]
    axes = {g.split("/")[0] for g in found}
    keys = ", ".join(k for k in top_level_keys() if k not in axes)
    sub = ",".join(f.name for f in dataclasses.fields(PathsConfig))
    keys = keys.replace("paths", f"paths.{{{sub}}}")
    return f"""\
qexp: quantization experiments for YOLO detectors. A job is one choice per axis (Hydra configs);
it quantizes, exports ONNX, measures mAP and latency on ONNX Runtime / TensorRT / torch, and
writes a result record that MLflow and `qexp report` read.

commands:
{COMMANDS}

axes (AXIS=CHOICE; * marks the default; files under conf/AXIS/):
{chr(10).join(lines)}

other keys: {keys}
  any field of an axis: AXIS.FIELD=VALUE (model.imgsz=320, data.calib.num=32, backend.iters=20)

examples:
{EXAMPLES}

more: `qexp --cfg job [OVERRIDE ...]` prints the composed config; `qexp --hydra-help` lists
Hydra's flags (--multirun, --config-dir DIR, --info, --cfg); README.md and docs/ explain the rest.
"""
