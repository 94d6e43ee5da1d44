"""Quantizers and observers; importing this package registers them."""

from qexp.quant import none  # noqa: F401
