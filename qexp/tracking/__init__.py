"""Tracking sinks; importing this package registers them."""

from qexp.tracking import mlflow_server, mlflow_sink  # noqa: F401
