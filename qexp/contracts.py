"""What quantizers and backends agree on: the precisions and routes a model reaches a backend
by, what a quantizer makes (:class:`Output`) and what a backend takes (:class:`Accepts`).

A quantizer declares every (precision, route) pair it can make and says which one a config asks
for; a backend declares what it runs. The runner checks the pair once, before any model loads,
and records a mismatch as SKIPPED with the backend's reason (docs/architecture.md). So no
quantizer or backend needs to know another by name.

Standard library only: the TensorRT worker (Python 3.10, numpy and tensorrt) imports it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum


class Choice(str, Enum):
    """A config choice (OmegaConf checks it at compose time): compares, hashes, prints and
    serialises as its value, so a choice is interchangeable with its string."""

    def __str__(self) -> str:
        return str(self.value)


class Precision(Choice):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Route(Choice):
    """How a network reaches the backend (docs/tensorrt.md, "Precisions and INT8 routes")."""

    float = "float"  # a float ONNX: fp32, or fp16 built by the backend
    qdq = "qdq"  # explicit QuantizeLinear/DequantizeLinear in the ONNX
    dynamic_range = "dynamic_range"  # an fp32 ONNX plus {tensor: amax} (TensorRT <= 10)
    trt_builtin = "trt_builtin"  # an fp32 ONNX that TensorRT's own calibrator quantizes


PRECISIONS = tuple(p.value for p in Precision)
ROUTES = tuple(r.value for r in Route)


@dataclass(frozen=True)
class Output:
    """What a quantizer hands a backend: a precision, by a route (plain strings; a Choice
    given for either is stored as its value)."""

    precision: str
    route: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", str(self.precision))
        object.__setattr__(self, "route", str(self.route))

    def __str__(self) -> str:
        return f"{self.precision} by route {self.route}"


def outputs(precisions: Iterable[str], routes: Iterable[str]) -> frozenset[Output]:
    """Every (precision, route) pair of the two lists: a quantizer's ``produces``."""
    return frozenset(Output(p, r) for p in precisions for r in routes)


@dataclass(frozen=True)
class Accepts:
    """What a backend runs: these precisions, by these routes. ``why_not`` says, for a
    precision or route it refuses, why (the tail of the SKIPPED reason)."""

    precisions: frozenset[str]
    routes: frozenset[str]
    why_not: Mapping[str, str] = field(default_factory=dict, hash=False)

    def refusal(self, out: Output) -> str | None:
        """Why ``out`` cannot run here, or None."""
        for kind, value, allowed in (
            ("precision", out.precision, self.precisions),
            ("route", out.route, self.routes),
        ):
            if value not in allowed:
                why = self.why_not.get(value, f"it runs {kind} {', '.join(sorted(allowed))}")
                return f"no {kind} {value}: {why}"
        return None
