"""An IAlgorithmSelector that narrows the tactic search (``format_filter``): where a layer has
implementations that keep its tensors in fp16/int8, the ones reading or writing fp32 are not
timed. The yolov8n fp16 build at optimisation level 2 times ~26k tactics, ~85 % of them reformats
between ten candidate formats per tensor (five fp32, five fp16); an fp16 or int8 engine keeps
fp32 only where nothing else exists (the network's own fp32 input and output), so those
candidates are mostly wasted build time. Standard library + tensorrt only.
"""

from __future__ import annotations

from typing import Any

FILTERS = ("no_fp32",)


def make_selector(trt: Any, kind: str) -> Any:
    if kind not in FILTERS:
        raise ValueError(f"format_filter={kind!r}: must be one of {FILTERS}")

    class NoFp32Selector(trt.IAlgorithmSelector):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IAlgorithmSelector.__init__(self)
            self.calls = 0
            self.offered = 0
            self.kept = 0

        def select_algorithms(self, context: Any, choices: list[Any]) -> list[int]:
            n = int(context.num_inputs) + int(context.num_outputs)

            def fp32_io(alg: Any) -> bool:
                return any(alg.get_algorithm_io_info(i).dtype == trt.float32 for i in range(n))

            keep = [i for i, alg in enumerate(choices) if not fp32_io(alg)]
            if not keep:  # fp32 is the only way (network input/output, shape layers)
                keep = list(range(len(choices)))
            self.calls += 1
            self.offered += len(choices)
            self.kept += len(keep)
            return keep

        def report_algorithms(self, contexts: list[Any], choices: list[Any]) -> None:
            return None

        def stats(self) -> dict[str, float]:
            return {"selector_calls": float(self.calls), "selector_offered": float(self.offered),
                    "selector_kept": float(self.kept)}  # fmt: skip

    return NoFp32Selector()
