"""Every configuration schema of the library, its shared validators, and their
registration with Hydra (one place for all of them).

- :mod:`kml.config.checks` -- :class:`ConfigError` and the shared validators;
- :mod:`kml.config.run` -- a meta-training run (``scripts/train.py``);
- :mod:`kml.config.tools` -- evaluation, comparison, benchmark, campaigns;
- :mod:`kml.config.transference` -- the transference analysis;
- :mod:`kml.config.prepare` -- dataset preparation;
- :mod:`kml.config.store` -- :func:`register_configs`;
- :mod:`kml.config.compose` -- where the Hydra configs are (:data:`CONFIG_DIR`), their
  resolvers, and :func:`compose_run_config`;
- :mod:`kml.config.imports` -- :func:`import_user_modules` (the ``imports`` key).

The library itself never reads global config: entry points compose a config and
pass it (or plain values) down. Importing this package does not import torch.
"""

from kml.config.checks import ConfigError, unknown_key_message, unknown_keys
from kml.config.compose import CONFIG_DIR, compose_run_config, register_resolvers
from kml.config.imports import import_user_modules
from kml.config.learner import learner_group_node, learner_options
from kml.config.prepare import DataPathsConfig, PrepareDataConfig, resolve_prepare_config
from kml.config.run import (
    CsvLoggerConfig,
    DataConfig,
    EpisodeConfig,
    EvalConfig,
    LearnerConfig,
    LoggerConfig,
    ModeConfig,
    ModulationConfig,
    ProtocolConfig,
    RunConfig,
    SchedulerConfig,
    SpecialistConfig,
    TensorBoardLoggerConfig,
    TrainConfig,
    WandbLoggerConfig,
    validate,
)
from kml.config.store import SCHEMAS, register_configs
from kml.config.tools import (
    BenchScriptConfig,
    CampaignBudget,
    CampaignConfig,
    CampaignDiagnostics,
    CampaignGroup,
    CampaignMethod,
    CampaignTransference,
    CompareScriptConfig,
    EvalOverrides,
    EvalScriptConfig,
    PaperReference,
    ReproduceScriptConfig,
)
from kml.config.transference import TransferenceScriptConfig, validate_transference_config

__all__ = [
    "CONFIG_DIR",
    "BenchScriptConfig",
    "CampaignBudget",
    "CampaignConfig",
    "CampaignDiagnostics",
    "CampaignGroup",
    "CampaignMethod",
    "CampaignTransference",
    "CompareScriptConfig",
    "ConfigError",
    "CsvLoggerConfig",
    "DataConfig",
    "DataPathsConfig",
    "EpisodeConfig",
    "EvalConfig",
    "EvalOverrides",
    "EvalScriptConfig",
    "LearnerConfig",
    "LoggerConfig",
    "ModeConfig",
    "ModulationConfig",
    "PaperReference",
    "PrepareDataConfig",
    "ProtocolConfig",
    "ReproduceScriptConfig",
    "RunConfig",
    "SCHEMAS",
    "SchedulerConfig",
    "SpecialistConfig",
    "TensorBoardLoggerConfig",
    "TrainConfig",
    "TransferenceScriptConfig",
    "compose_run_config",
    "import_user_modules",
    "learner_group_node",
    "learner_options",
    "register_configs",
    "register_resolvers",
    "resolve_prepare_config",
    "unknown_key_message",
    "unknown_keys",
    "validate",
    "validate_transference_config",
    "WandbLoggerConfig",
]
