"""Fill Hydra's ConfigStore from the schemas and the plugin registry.

It loads the plugins to read their schemas, so it stands beside ``plugins.py`` in the job's
layer (docs/architecture.md), above the typed configs of ``config/`` that every layer reads.

Each axis has a base schema at ``schema/<axis>/base``; a plugin registered with a ``schema``
(e.g. ``@QUANTIZERS.register("ptq", schema=PTQConfig)``) adds ``schema/<axis>/<name>``.
YAML files start with ``defaults: [/schema/<axis>/<name>@_here_, _self_]``.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from qexp import gpu_share
from qexp.config import schema as s
from qexp.config.settings import BASE_SCHEMAS, PLUGIN_AXES
from qexp.plugins import load_plugins


def register_configs() -> None:
    """Load the plugins and store every schema (idempotent; a plugin loaded later, from
    ``$QEXP_PLUGINS``, is stored by the next call). Called by the CLI and by tests."""
    load_plugins()
    # ${qexp_gpus:} in launcher configs: one parallel job per GPU of this machine
    OmegaConf.register_new_resolver("qexp_gpus", gpu_share.gpu_count, replace=True)
    # ${qexp_gpu_jobs:}: jobs at once on them (builds share a GPU, timings take it alone)
    OmegaConf.register_new_resolver("qexp_gpu_jobs", gpu_share.gpu_jobs, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="qexp_config", node=s.Config)
    for axis, schema in BASE_SCHEMAS.items():
        cs.store(group=f"schema/{axis}", name="base", node=schema)
    for axis, registry in PLUGIN_AXES.items():
        for entry in registry:
            if entry.schema is not None:
                cs.store(group=f"schema/{axis}", name=entry.name, node=entry.schema)
