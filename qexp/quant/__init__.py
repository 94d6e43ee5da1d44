"""Quantizers and observers; importing this package registers them."""

from importlib import import_module
from importlib.util import find_spec

from qexp.quant import none, observers, ptq  # noqa: F401

# plugins owned by other modules of the project, registered when present
for _name in ("trt_builtin", "adaround", "qat"):
    if find_spec(f"qexp.quant.{_name}") is not None:
        import_module(f"qexp.quant.{_name}")
