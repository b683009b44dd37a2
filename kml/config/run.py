"""The schema of a meta-training run (``configs/config.yaml``): every key of
``scripts/train.py`` with its default, and :func:`validate`, the range and consistency
checks (ways >= 2, learning rates > 0, ...).

Defaults come from the learner recipes (:mod:`kml.recipes`) and the modulation spec
(:class:`~kml.modulation_spec.ModulationSpec`); ``learner=maml`` and ``learner=protonet``
set every ``learner.*`` key and the ``train.*`` budget to that learner's recipe
(:func:`learner_group_node`). The names of learners, modulations and backbones are
checked against their registries, after the modules listed in ``imports`` are imported.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from kml.config.checks import ConfigError, at_least, choice, reject_unknown_keys, resolves
from kml.config.imports import import_user_modules
from kml.config.learner import LearnerConfig, SpecialistConfig, check_learner, upgrade_saved_learner
from kml.config.resolvers import CONFIG_DIR, register_resolvers
from kml.modulation_spec import ModulationSpec
from kml.recipes import (
    DEFAULT_LEARNER,
    EPISODE_DEFAULTS,
    PER_TASK_CONVS,
    PROTOCOLS,
    RECIPES,
)

__all__ = [
    "saved_run_config",
    "EpisodeConfig",
    "ModeConfig",
    "SpecialistConfig",
    "LearnerConfig",
    "ModulationConfig",
    "ProtocolConfig",
    "SchedulerConfig",
    "TrainConfig",
    "EvalConfig",
    "DataConfig",
    "CsvLoggerConfig",
    "TensorBoardLoggerConfig",
    "WandbLoggerConfig",
    "LoggerConfig",
    "RunConfig",
    "validate",
]


@dataclass
class EpisodeConfig:
    ways: int = EPISODE_DEFAULTS.ways
    shots: int = EPISODE_DEFAULTS.shots
    queries: int = EPISODE_DEFAULTS.queries


@dataclass
class ModeConfig:
    """A task distribution: one dataset or a multimodal mixture."""

    name: str = "synthetic"
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])


_DEFAULT = RECIPES[DEFAULT_LEARNER]  # the schema's defaults: the default learner's recipe


@dataclass
class ProtocolConfig:
    """The ``protocol=paper|published`` group: which protocol the ProtoNet family follows
    (``configs/protocol/<name>.yaml`` sets the learner and modulation keys it implies)."""

    name: str = PROTOCOLS[0]


def _schema_type(tp: Any) -> Any:
    """A spec field's type as a config schema allows it: tuples as lists, mappings as dicts."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return Optional[_schema_type(next(a for a in args if a is not type(None)))]
    if origin is tuple:
        return list[args[0]] if args else list
    if origin in (dict, collections.abc.Mapping) or tp is Mapping:
        return dict[str, Any]
    return tp


def _schema_default(f: dataclasses.Field) -> dataclasses.Field:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    if isinstance(default, (tuple, list, dict)):
        value = list(default) if isinstance(default, (tuple, list)) else dict(default)
        return field(default_factory=lambda: copy.deepcopy(value))
    return field(default=default)


#: the ``modulation`` section: the fields of :class:`~kml.modulation_spec.ModulationSpec`,
#: its one declaration (types, defaults and docs), as a config schema
ModulationConfig = dataclasses.make_dataclass(
    "ModulationConfig",
    [(f.name, _schema_type(t), _schema_default(f))
     for f, t in zip(dataclasses.fields(ModulationSpec), typing.get_type_hints(ModulationSpec).values())],
)
ModulationConfig.__doc__ = ("The ``modulation`` section: the settings of :class:`~kml.modulation_spec.ModulationSpec` "
                            "(their one declaration).")
ModulationConfig.__module__ = __name__


@dataclass
class SchedulerConfig:
    step_size: int = _DEFAULT.scheduler_step_size  # 0: constant learning rate
    gamma: float = _DEFAULT.scheduler_gamma


@dataclass
class TrainConfig:
    iterations: int = _DEFAULT.iterations
    meta_batch_size: int = _DEFAULT.meta_batch_size
    lr: float = _DEFAULT.lr
    lr_modulation: Optional[float] = None  # encoder + generators; default: lr
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 50
    vectorized: str = "auto"  # auto | true | false: tasks as one batch, or a per-task loop
    precision: str = "fp32"  # fp32 | bf16: autocast of forward passes (parameters and inner updates stay fp32)
    cuda_graphs: str = "auto"  # auto | true | false: replay each iteration as a CUDA graph (auto: one GPU)
    deterministic: bool = True  # deterministic algorithms (exact reproducibility on CPU)
    fused_adam: bool = False  # PyTorch's fused Adam kernels instead of the multi-tensor (foreach) ones
    tf32: bool = False  # float32 matrix products on TF32 tensor cores (CUDA; convolutions: cuDNN's default)
    # grouped | channels_last | unfold | shared: how a convolution with one kernel per task runs (shared: the
    # ProtoNet family with KML's channel or published factors, through the one backbone weight)
    per_task_conv: str = "grouped"
    progress: bool = True
    # a check that the model can learn (debug=overfit): train on the first N meta-batches over and
    # over instead of fresh tasks; 0 (default): fresh tasks every iteration
    overfit_batches: int = 0


@dataclass
class EvalConfig:
    tasks_per_mode: int = 1000
    batch_size: int = 20  # tasks per evaluation meta-batch
    seed: int = 2021  # the same evaluation tasks for every method
    split: str = "test"
    # validation during training: every val_every iterations (0: off) on val_tasks_per_mode
    # fixed, seeded tasks per mode of the val split (the same for every method)
    val_every: int = 0
    val_tasks_per_mode: int = 200
    # the checkpoint tested at the end of training: last (the paper's protocol) | best (the
    # best overall val accuracy, checkpoints/best.pt; needs val_every > 0)
    checkpoint: str = "last"


@dataclass
class CsvLoggerConfig:
    """``logger=csv``: one row per logged iteration (training and validation)."""

    file: str = "metrics.csv"  # relative to the run directory (a specialist's: its own)


@dataclass
class TensorBoardLoggerConfig:
    """``logger=tensorboard`` (the ``tensorboard`` extra): event files for TensorBoard."""

    dir: str = "tensorboard"  # relative to the run directory (a specialist's: its own)


@dataclass
class WandbLoggerConfig:
    """``logger=wandb`` (the ``wandb`` extra): one W&B run per kml run, resumed with it.
    ``WANDB_MODE=offline`` (or ``mode: offline``) writes it under ``<run>/wandb`` only."""

    project: str = "kml"
    entity: Optional[str] = None
    name: Optional[str] = None  # default: the run directory's name
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    mode: Optional[str] = None  # online | offline | disabled; null: W&B's own (WANDB_MODE, else online)


@dataclass
class LoggerConfig:
    """The ``logger`` group: metric loggers beside ``metrics.jsonl`` (always written), each
    fed the same records. ``logger=none`` (default), ``logger=csv``, ``logger=tensorboard``,
    ``logger=wandb``, or several: ``logger=[tensorboard,wandb]``. A logger is on when its
    section is set."""

    csv: Optional[CsvLoggerConfig] = None
    tensorboard: Optional[TensorBoardLoggerConfig] = None
    wandb: Optional[WandbLoggerConfig] = None


def _split_choices() -> dict[str, Optional[str]]:
    """``{dataset: None}`` for every dataset with more than one split scheme."""
    from kml.data.datasets import REAL_SPECS

    return {name: None for name, spec in REAL_SPECS.items() if len(spec.split_schemes) > 1}


@dataclass
class DataConfig:
    root: str = "data"
    image_size: int = 84
    replacement: bool = False  # sample images with replacement when a class is too small
    # the split scheme of each dataset that has several (null: its default), e.g.
    # data.splits.omniglot=lake or data.splits.gtsrb=test_only; prepared with the same split
    splits: dict[str, Optional[str]] = field(default_factory=lambda: _split_choices())
    split_seed: int = 0  # the seed the datasets' seeded class splits were prepared with


@dataclass
class RunConfig:
    mode: ModeConfig = field(default_factory=ModeConfig)
    # the learner's fixed keys (LearnerConfig) and its own options, declared by its class
    learner: Any = field(default_factory=lambda: {"name": DEFAULT_LEARNER})
    modulation: ModulationConfig = field(default_factory=ModulationConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    multi: bool = False  # Multi-* specialists: one learner per mode
    # run directory to continue, or auto: continue the run in hydra.run.dir if it holds one
    # of the same config, else start it there (for requeued cluster jobs)
    resume: Optional[str] = None
    # modules imported before the config is validated (their registered modulations,
    # learners and backbones become selectable), e.g. imports=[my_modulation]
    imports: list[str] = field(default_factory=list)


def validate(cfg: DictConfig | RunConfig, saved: bool = False) -> None:
    """Import the modules of ``imports``, then check ranges and consistency of a composed
    run config: registered names, the learner's options and its backbone's and
    modulation's settings, each by its declaration.

    Args:
        saved: ``cfg`` is a run's saved config (evaluated or resumed). Its protocol was
            checked when it was trained, so it is not checked against what ``protocol=``
            sets today: a record that predates an option the protocol has since gained
            (``modulation.init``) keeps its name and loads with that option's default.

    Raises:
        ConfigError: naming the offending key and the allowed values.
    """
    import kml.catalogue  # noqa: F401  (the built-in names register)
    from kml.backbone import list_backbones
    from kml.modulation import list_modulations
    from kml.registry import get_learner, list_learners

    register_resolvers()  # the backbone defaults of learner.backbone.channels and .style
    c = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    import_user_modules(c.get("imports"))
    reject_unknown_keys(c, RunConfig)
    choice(c.learner.name, list_learners(), "learner.name", registered=True)
    choice(c.modulation.name, list_modulations(), "modulation.name", registered=True)
    backbone_name = OmegaConf.select(c, "learner.backbone.name")  # before its defaults resolve
    choice(backbone_name, list_backbones(), "learner.backbone.name", registered=True)
    resolves(c)
    choice(c.protocol.name, PROTOCOLS, "protocol")
    # the protocol first: its message names the override that contradicts it
    _check_protocol(c, get_learner(c.learner.name).protocol_options, saved)
    check_learner(c)
    spec = _check_modulation_and_backbone(c)
    _check_run(c)
    if c.train.per_task_conv == "shared":
        from kml.modulation import get_modulation

        _check_shared_conv(c, get_learner(c.learner.name), get_modulation(spec.name), spec)


def _check_modulation_and_backbone(c: DictConfig) -> ModulationSpec:
    """The modulation's settings (its spec, and its layer's own check) and the backbone's
    (its spec, and what the registered backbone offers); returns the spec."""
    from kml.backbone import get_backbone
    from kml.backbone_spec import BackboneSpec
    from kml.modulation import get_modulation

    try:
        spec = ModulationSpec.from_config(c.modulation)
        layer = get_modulation(spec.name)
        if layer is not None:
            layer.check_spec(spec)
    except ValueError as err:
        message = str(err)
        raise ConfigError(message if message.startswith("modulation.") else f"modulation.{message}") from None
    b = BackboneSpec.from_config(c.learner.backbone)
    backbone = get_backbone(b.name)
    if b.style is not None:
        choice(b.style, backbone.styles, "learner.backbone.style")
    choice(b.pool, backbone.pools, "learner.backbone.pool")
    try:
        backbone.check_options(channels=None if b.channels is None else list(b.channels), style=b.style, pool=b.pool,
                               modulation=spec)
    except ValueError as err:
        raise ConfigError(f"learner.backbone.name={b.name}: {err}") from None
    return spec


def _check_run(c: DictConfig) -> None:
    """The ranges and choices of the episode, training, evaluation, data and logger keys."""
    choice(c.eval.checkpoint, ("last", "best"), "eval.checkpoint")
    choice(str(c.train.vectorized).lower(), ("auto", "true", "false"), "train.vectorized")
    choice(c.eval.split, ("train", "val", "test"), "eval.split")
    choice(c.train.precision, ("fp32", "bf16"), "train.precision")
    choice(str(c.train.cuda_graphs).lower(), ("auto", "true", "false"), "train.cuda_graphs")
    choice(c.train.per_task_conv, PER_TASK_CONVS, "train.per_task_conv")
    for key, minimum, strict in (
        ("episode.ways", 2, False), ("episode.shots", 1, False), ("episode.queries", 1, False),
        ("train.iterations", 1, False), ("train.meta_batch_size", 1, False), ("train.lr", 0, True),
        ("train.lr_modulation", 0, True), ("train.checkpoint_every", 1, False), ("train.log_every", 1, False),
        ("train.overfit_batches", 0, False), ("train.scheduler.step_size", 0, False),
        ("train.scheduler.gamma", 0, True), ("eval.tasks_per_mode", 1, False), ("eval.batch_size", 1, False),
        ("eval.val_every", 0, False), ("eval.val_tasks_per_mode", 1, False), ("data.image_size", 8, False),
        ("learner.specialist.iterations", 1, False), ("learner.specialist.meta_batch_size", 1, False),
        ("learner.specialist.inner_lr", 0, True), ("learner.specialist.inner_steps", 0, False),
    ):
        at_least(OmegaConf.select(c, key), minimum, key, strict=strict)
    if c.eval.checkpoint == "best" and not c.eval.val_every:
        raise ConfigError(
            "eval.checkpoint=best tests the checkpoint with the best val accuracy, but validation is off; "
            "set eval.val_every=<iterations> (e.g. 500) or use eval.checkpoint=last"
        )
    if c.logger.wandb is not None and c.logger.wandb.mode is not None:
        choice(c.logger.wandb.mode, ("online", "offline", "disabled"), "logger.wandb.mode")
    if not c.mode.datasets:
        raise ConfigError("mode.datasets is empty; list at least one dataset, e.g. mode.datasets=[omniglot]")


def _check_shared_conv(c: DictConfig, learner, layer, spec) -> None:
    """``train.per_task_conv=shared`` runs a factorised kernel modulation of one backbone
    weight as dense convolutions with that weight: it needs a learner without per-task
    weights and KML with factors; without a kernel modulation it changes nothing."""
    if learner.per_task_weights:
        raise ConfigError(
            f"train.per_task_conv=shared needs one backbone weight for all tasks, but learner={c.learner.name} "
            "adapts the weights per task; use train.per_task_conv=grouped, channels_last or unfold"
        )
    if layer is None or layer.target != "kernel":
        return  # no per-task convolution (none, film): nothing to change
    from kml.modulation import KernelModulatedConv2d

    if not issubclass(layer, KernelModulatedConv2d):
        raise ConfigError(
            f"train.per_task_conv=shared needs KML's factorised kernels, but modulation={spec.name} builds its own "
            "per-task kernels; use train.per_task_conv=grouped, channels_last or unfold"
        )
    if spec.factorization == "full":
        raise ConfigError(
            "train.per_task_conv=shared needs a factorised kernel modulation, and modulation.factorization=full has "
            "none; use modulation.factorization=channel or published, or train.per_task_conv=grouped"
        )


def _check_protocol(c: DictConfig, protocol_options: tuple[str, ...], saved: bool) -> None:
    """The protocol options are the ProtoNet family's (the learners that list them in
    ``protocol_options``); a run that names a protocol follows all of it; the published
    refinement is 1-shot only."""
    if not protocol_options and c.protocol.name != PROTOCOLS[0]:
        raise ConfigError(
            f"protocol={c.protocol.name} is the published KML code's protocol, which exists for the ProtoNet "
            f"family only; use learner=protonet, or drop protocol={c.protocol.name} for learner={c.learner.name}"
        )
    if not saved:
        _check_protocol_settings(c)
    if OmegaConf.select(c, "learner.prototype_refinement") == "published" and int(c.episode.shots) > 1:
        raise ConfigError(
            f"learner.prototype_refinement=published reproduces the published code at 1-shot only, and this run has "
            f"episode.shots={c.episode.shots}; use episode.shots=1, or learner.prototype_refinement=soft|none"
        )


def protocol_settings(name: str) -> dict[str, Any]:
    """The options a protocol group sets, from its file ``configs/protocol/<name>.yaml``
    (the one source of them), as ``{"learner.query_modulation": "query", ...}``; empty
    for a protocol defined elsewhere (a user's config folder)."""
    from pathlib import Path

    path = Path(CONFIG_DIR) / "protocol" / f"{name}.yaml"
    if not path.is_file():
        return {}
    settings: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            settings[prefix[:-1]] = node

    walk(OmegaConf.to_container(OmegaConf.load(path)), "")
    return {k: v for k, v in settings.items() if not k.startswith("protocol.")}


def _check_protocol_settings(c: DictConfig) -> None:
    """A run that names a protocol has every option that protocol sets: a later override
    of one of them would leave a record saying ``protocol=published`` for a run that
    does not follow it."""
    def text(v: Any) -> str:  # as it is written in an override
        return str(v).lower() if isinstance(v, bool) else str(v)

    for key, value in protocol_settings(c.protocol.name).items():
        actual = OmegaConf.select(c, key)
        if actual != value:
            raise ConfigError(
                f"protocol={c.protocol.name} sets {key}={text(value)}, but this run has {key}={text(actual)}; "
                f"drop that override, or keep protocol={PROTOCOLS[0]} and set the options one by one"
            )


def saved_run_config(saved: DictConfig) -> DictConfig:
    """A recorded run config (a run directory's ``config.yaml``, a checkpoint's embedded
    one) merged into the schema, struct: unknown keys are rejected. Records of kml 0.1
    are read in today's form first (:func:`~kml.config.learner.upgrade_saved_learner`).

    Raises:
        Exception: omegaconf's, for a key or value the schema rejects.
    """
    saved = copy.deepcopy(saved)
    upgrade_saved_learner(saved.get("learner"))
    cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), saved)
    OmegaConf.set_struct(cfg, True)
    return cfg
