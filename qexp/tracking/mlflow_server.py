"""tracking=mlflow_server: log to an `mlflow server` (the one parallel jobs share).

The URI is ``tracking.uri``, or the server ``qexp server start`` recorded for the same output
dir. When the server cannot be reached the job must not wait minutes on MLflow's HTTP retries:
a quick health check fails first, the runner keeps the record on disk and says to run
``qexp ingest`` later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from qexp.config.schema import TrackingConfig
from qexp.registry import TRACKERS
from qexp.tracking.mlflow_sink import MlflowSink
from qexp.tracking.server import healthy, read_state

# MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) would stall a job for minutes
# on a dead server; a server that answered the health check needs few retries.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


@dataclass
class MlflowServerConfig(TrackingConfig):
    health_timeout_s: float = 5.0  # how long a job waits for the server before giving up


class TrackingServerDown(ConnectionError):
    """The tracking server did not answer its health check."""


def server_uri(cfg) -> str:
    """``tracking.uri`` if set, else the server started by `qexp server start` for the outputs."""
    if cfg.tracking.get("uri"):
        return str(cfg.tracking.uri)
    info = read_state(cfg.paths.output_dir)
    if info is None:
        raise TrackingServerDown(
            f"tracking=mlflow_server: no tracking.uri and no server recorded in "
            f"{cfg.paths.output_dir} — run `qexp server start --output-dir "
            f"{cfg.paths.output_dir}` or set tracking.uri=http://HOST:PORT"
        )
    return info.uri


@TRACKERS.register("mlflow_server", schema=MlflowServerConfig)
def mlflow_server_sink(cfg) -> MlflowSink:
    uri = server_uri(cfg)
    if not uri.startswith(("http://", "https://")):
        raise ValueError(f"tracking=mlflow_server: tracking.uri={uri!r} is not an http(s) URI")
    ensure_answering(uri, float(cfg.tracking.get("health_timeout_s", 5.0)))
    return MlflowSink(uri)


def ensure_answering(uri: str, timeout: float) -> None:
    """Raise :class:`TrackingServerDown` unless ``uri`` answers its health check within
    ``timeout`` s; then cap MLflow's HTTP retries for this process (``_HTTP_DEFAULTS``)."""
    if not healthy(uri, timeout=timeout):
        raise TrackingServerDown(f"tracking server {uri} is not answering (/health)")
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
