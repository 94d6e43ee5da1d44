"""Backends; importing this package registers them."""

from importlib import import_module
from importlib.util import find_spec

from qexp.backends import onnxruntime, torch_backend  # noqa: F401

# backends owned by other modules of the project, registered when present
for _name in ("tensorrt",):
    if find_spec(f"qexp.backends.{_name}") is not None:
        import_module(f"qexp.backends.{_name}")
