"""quantizer.impl=modelopt: placeholder until the ModelOpt route lands."""

from __future__ import annotations

from importlib.util import find_spec

from omegaconf import DictConfig


def check(cfg: DictConfig) -> str | None:
    if find_spec("modelopt") is None:
        return "quantizer.impl=modelopt needs NVIDIA ModelOpt: pip install 'qexp[modelopt]'"
    return "quantizer.impl=modelopt: not implemented yet"


def quantize(job, detector, data):
    raise RuntimeError(check(job.cfg))
