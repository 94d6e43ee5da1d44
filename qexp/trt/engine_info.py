"""TensorRT engine layer info (IEngineInspector JSON) -> summary metrics and a per-layer table.

Conventions follow NVIDIA's trt-engine-explorer (trex), so numbers compare with its reports:
- a layer's precision is the datatype of its first input (layers without inputs, i.e.
  constants, have none);
- a reformat layer is one whose type (``ParameterType``, else ``LayerType``) is ``Reformat``:
  format/precision conversions TensorRT inserted, Q/DQ quantize steps, concat copies and casts.
  Their ``Origin`` (REFORMAT, QDQ, CONCAT, CAST) is kept in the table and the summary.
The inspector may write raw control characters inside strings: JSON is read with strict=False.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# datatype words in "Format/Datatype" strings, most specific first ("BFloat16" holds "Float")
_DTYPES = (
    ("bfloat16", "bf16"),
    ("fp8", "fp8"),
    ("uint8", "uint8"),
    ("int8", "int8"),
    ("fp16", "fp16"),
    ("half", "fp16"),
    ("fp32", "fp32"),
    ("float", "fp32"),
    ("int32", "int32"),
    ("int64", "int64"),
    ("bool", "bool"),
)
_PROFILE = re.compile(r"\s*\[profile (\d+)\]\s*$")
METRIC_PRECISIONS = ("int8", "fp16", "fp32")


@dataclass
class EngineSummary:
    layers_total: int
    precisions: dict[str, int] = field(default_factory=dict)  # precision -> layer count
    reformat_layers: int = 0
    reformat_by_origin: dict[str, int] = field(default_factory=dict)
    layer_types: dict[str, int] = field(default_factory=dict)
    bindings: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The record's metric names: layers_total, layers_int8/fp16/fp32, reformat_layers."""
        m = {
            "layers_total": float(self.layers_total),
            "reformat_layers": float(self.reformat_layers),
        }
        for p in METRIC_PRECISIONS:
            m[f"layers_{p}"] = float(self.precisions.get(p, 0))
        return m

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load(path: str | Path) -> dict[str, Any]:
    """Read an inspector JSON file, naming the file when it is not one."""
    path = Path(path)
    try:
        info = json.loads(path.read_text(), strict=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read TensorRT layer info {path}: {e}") from e
    if not isinstance(info, dict) or not isinstance(info.get("Layers"), list):
        raise ValueError(f"{path}: not IEngineInspector JSON (no 'Layers' list); was the engine "
                         "built with ProfilingVerbosity.DETAILED?")  # fmt: skip
    return info


def datatype(fmt: str) -> str:
    """'Thirty-two wide channel vectorized row major Int8 format' -> 'int8'."""
    low = fmt.lower()
    for word, name in _DTYPES:
        if word in low:
            return name
    return "unknown"


def layer_type(layer: dict[str, Any]) -> str:
    return str(layer.get("ParameterType") or layer.get("LayerType") or "unknown")


def precision(layer: dict[str, Any]) -> str | None:
    inputs = layer.get("Inputs") or []
    if not inputs:
        return None
    return datatype(str(inputs[0].get("Format/Datatype", "")))


def is_reformat(layer: dict[str, Any]) -> bool:
    return layer_type(layer) == "Reformat"


def profile_of(layer: dict[str, Any]) -> int:
    m = _PROFILE.search(str(layer.get("Name", "")))
    return int(m.group(1)) if m else 0


def layers(info: dict[str, Any], profile: int | None = 0) -> list[dict[str, Any]]:
    """The layer dicts (of one optimisation profile; None = all). Inspector JSON of a
    context holds one profile; a whole multi-profile engine suffixes names '[profile N]'."""
    out = [L for L in info["Layers"] if isinstance(L, dict)]
    if profile is not None:
        out = [L for L in out if profile_of(L) == profile]
    return out


def summarize(info: dict[str, Any], profile: int | None = 0) -> EngineSummary:
    ls = layers(info, profile)
    prec = Counter(p for p in (precision(L) for L in ls) if p is not None)
    ref = [L for L in ls if is_reformat(L)]
    return EngineSummary(
        layers_total=len(ls),
        precisions=dict(sorted(prec.items())),
        reformat_layers=len(ref),
        reformat_by_origin=dict(sorted(Counter(str(L.get("Origin", "?")) for L in ref).items())),
        layer_types=dict(sorted(Counter(layer_type(L) for L in ls).items())),
        bindings=[str(b) for b in info.get("Bindings", [])],
    )


def _fmt(tensors: list[dict[str, Any]]) -> str:
    return " | ".join(str(t.get("Format/Datatype", "")) for t in tensors)


def layer_table(
    info: dict[str, Any], profile_ms: dict[str, float] | None = None, profile: int | None = 0
) -> list[dict[str, Any]]:
    """One row per layer: name, type, precision, formats, origin, tactic, time (if profiled)."""
    rows = []
    for i, L in enumerate(layers(info, profile)):
        name = str(L.get("Name", ""))
        rows.append({
            "index": i,
            "name": name,
            "type": layer_type(L),
            "kernel": str(L.get("LayerType", "")),
            "precision": precision(L) or "",
            "inputs": _fmt(L.get("Inputs") or []),
            "outputs": _fmt(L.get("Outputs") or []),
            "origin": str(L.get("Origin", "")),
            "tactic": str(L.get("TacticName") or L.get("TacticValue") or ""),
            "ms": "" if profile_ms is None or name not in profile_ms else round(profile_ms[name], 5),
        })  # fmt: skip
    return rows


def profile_times(profile: dict[str, Any]) -> dict[str, float]:
    """Layer name -> mean ms from the worker's layer_profile JSON."""
    return {str(x["name"]): float(x["ms"]) for x in profile.get("layers", [])}


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def to_markdown(summary: EngineSummary) -> str:
    """A short human summary (for an MLflow artifact or a results doc)."""
    lines = [
        f"layers: {summary.layers_total}",
        "precision: " + ", ".join(f"{k} {v}" for k, v in summary.precisions.items()),
        f"reformat layers: {summary.reformat_layers} "
        + "("
        + ", ".join(f"{k} {v}" for k, v in summary.reformat_by_origin.items())
        + ")",
        "types: " + ", ".join(f"{k} {v}" for k, v in summary.layer_types.items()),
    ]
    return "\n".join(f"- {x}" for x in lines) + "\n"
