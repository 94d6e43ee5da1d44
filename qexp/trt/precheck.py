"""Does TensorRT's graph optimizer accept this ONNX? Answered in seconds, before any build.

TensorRT 8.6.0 refuses some explicit-quantization graphs in its optimizer with
``optimizer.cpp::filterQDQFormats: Assertion !n->candidateRequirements.empty() failed ... node
being incorrectly marked as an int8 node`` — seconds into a build, before any tactic is timed.
So a build that reaches the tactic search has been accepted by the optimizer: this check starts
a build with the flags of the real one and stops its process at the first verbose line of the
tactic search (TensorRT 8.6 has no IProgressMonitor to cancel a build, hence a process of its
own that ends itself). It never times a tactic.

    python -m qexp.trt.precheck MODEL.onnx [--batch-sizes 1 32] [--no-fp16]

Prints one line and exits: ``pass`` (0), ``refused: <TensorRT's message>`` (3), ``error: ...``
(4: the ONNX does not parse; 5: the build ended without an engine for another reason). Standard
library and tensorrt only, like the worker; the driver that bisects a refused graph to the Q/DQ
pairs TensorRT cannot take is qexp/backends/trt_precheck.py.
"""

from __future__ import annotations

import argparse
import os
import sys

PASS, REFUSED, ERROR = "pass", "refused", "error"
EXIT = {PASS: 0, REFUSED: 3, ERROR: 4}
# what TensorRT 8.6 logs when its optimizer cannot place a Q/DQ pair
REFUSAL = ("filterQDQFormats", "incorrectly marked as an int8 node")
# verbose lines TensorRT prints once the optimizer is done and the tactic search begins
SEARCHING = ("Timing Runner", "Autotuning format combination", "Computing costs for")


def _say(line: str, code: int) -> None:
    print(line, flush=True)
    sys.stdout.flush()
    os._exit(code)  # a build in flight cannot be stopped any other way on 8.6


def check(onnx_path: str, batch_sizes: list[int], fp16: bool = True) -> int:
    import tensorrt as trt

    from qexp.trt import build, compat

    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):  # noqa: ANN001
            if any(s in msg for s in REFUSAL):
                _say(f"{REFUSED}: {' '.join(msg.split())[:600]}", EXIT[REFUSED])
            if any(s in msg for s in SEARCHING):
                _say(PASS, EXIT[PASS])
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(" ".join(msg.split())[:300])

    logger = Logger()
    try:
        builder, network, _parser = build.parse_onnx(trt, logger, onnx_path, strongly_typed=False)
        config = builder.create_builder_config()
        if fp16:
            compat.set_flag(trt, config, "FP16")
        compat.set_flag(trt, config, "INT8")
        compat.set_opt_level(config, 0)
        static = int(network.get_input(0).shape[0])  # a static-batch ONNX builds at its batch
        build.add_profiles(builder, network, config, batch_sizes if static < 0 else [static])
    except build.BuildError as e:
        print(f"{ERROR}: {e}", flush=True)
        return EXIT[ERROR]
    plan = builder.build_serialized_network(network, config)
    if plan is not None:  # a graph with nothing to tune (no tactic search line was seen)
        print(PASS, flush=True)
        return EXIT[PASS]
    print(f"{ERROR}: no engine: {' | '.join(logger.errors[-3:])}", flush=True)
    return 5


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m qexp.trt.precheck", description=__doc__)
    ap.add_argument("onnx")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--no-fp16", action="store_true", help="INT8 without the fp16 fallback")
    a = ap.parse_args(argv)
    return check(a.onnx, a.batch_sizes, fp16=not a.no_fp16)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
