"""The one place that imports plugin modules: their decorators fill the registries.

qexp's own plugins are listed here; plugins of your own (a module of yours plus a YAML under
``--config-dir``) are named in ``$QEXP_PLUGINS``, comma-separated module names importable from
the current environment. See docs/architecture.md, "Adding a quantizer".
"""

from __future__ import annotations

import importlib
import os

ENV = "QEXP_PLUGINS"


def external_plugins() -> list[str]:
    """The module names ``$QEXP_PLUGINS`` lists."""
    return [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]


def load_plugins() -> None:
    """Import every plugin module (idempotent: a module registers once)."""
    from qexp.backends import onnxruntime, tensorrt, torch_backend  # noqa: F401
    from qexp.models import ultralytics_family, yolov5_classic  # noqa: F401
    from qexp.quant import adaround, none, observers, ptq, qat, trt_builtin  # noqa: F401
    from qexp.quant.plugins import modelopt, mqbench  # noqa: F401
    from qexp.tracking import mlflow_server, mlflow_sink  # noqa: F401

    for name in external_plugins():
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ImportError(f"{ENV}: cannot import plugin module {name!r}: {e}") from e
