"""Registration of every schema (and of the ``learner`` group options) in Hydra's ConfigStore."""

from __future__ import annotations

from kml.config.prepare import PrepareDataConfig
from kml.config.run import RunConfig, learner_group_node
from kml.config.tools import BenchScriptConfig, CompareScriptConfig, EvalScriptConfig, ReproduceScriptConfig
from kml.config.transference import TransferenceScriptConfig
from kml.recipes import RECIPES

__all__ = ["register_configs", "SCHEMAS"]

#: the schema of each ``configs/<name>.yaml``, registered as ``<name>_schema``
SCHEMAS = {
    "config": RunConfig,
    "eval": EvalScriptConfig,
    "compare": CompareScriptConfig,
    "bench": BenchScriptConfig,
    "transference": TransferenceScriptConfig,
    "prepare_data": PrepareDataConfig,
    "reproduce": ReproduceScriptConfig,
}


def register_configs() -> None:
    """Register every schema and the ``learner=maml|protonet`` group options (from the
    recipes of :mod:`kml.recipes`). Idempotent."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
    for learner in RECIPES:
        store.store(group="learner", name=learner, node=learner_group_node(learner), package="_global_")
