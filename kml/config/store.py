"""Registration of every schema (and of the ``learner`` group options) in Hydra's ConfigStore."""

from __future__ import annotations

from kml.config.learner import learner_group_node
from kml.config.prepare import PrepareDataConfig
from kml.config.run import RunConfig
from kml.config.tools import BenchScriptConfig, CompareScriptConfig, EvalScriptConfig, ReproduceScriptConfig
from kml.config.transference import TransferenceScriptConfig

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
    """Register every schema, a ``learner=<name>`` group option for every registered learner
    (its declared options and its recipe, :func:`kml.config.learner.learner_group_node`) and
    the maximising ``hydra/sweeper=optuna``. Idempotent."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
    import kml.catalogue  # noqa: F401  (the built-in learners register)
    from kml.registry import list_learners

    for learner in list_learners():  # the built-ins, and learners of modules imported before composing
        store.store(group="learner", name=learner, node=learner_group_node(learner), package="_global_")
    _register_optuna_objective(store)


def _register_optuna_objective(store) -> None:
    """``hydra/sweeper=optuna`` maximises: ``kml-train`` returns a val accuracy.

    The sweeper plugin (the ``optuna`` extra) registers its own ``optuna`` option, which
    minimises; the plugins are scanned first (Hydra scans them once per process), so this
    option, the plugin's with ``direction: maximize``, replaces it. Without the plugin
    there is nothing to register.
    """
    try:
        from hydra.core.plugins import Plugins

        Plugins.instance()
        from hydra_plugins.hydra_optuna_sweeper.config import Direction, OptunaSweeperConf
    except ImportError:
        return
    store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf(direction=Direction.maximize),
                provider="kml")
