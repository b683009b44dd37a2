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

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from kml.config.checks import ConfigError, at_least, choice, reject_unknown_keys, resolves
from kml.config.imports import import_user_modules
from kml.config.resolvers import CONFIG_DIR, register_resolvers
from kml.modulation_spec import ModulationSpec
from kml.recipes import (
    BATCH_NORMS,
    DEFAULT_LEARNER,
    EPISODE_DEFAULTS,
    PER_TASK_CONVS,
    PROTOCOLS,
    PROTOTYPE_REFINEMENTS,
    QUERY_MODULATIONS,
    RECIPES,
    plain,
)

__all__ = [
    "EpisodeConfig",
    "ModeConfig",
    "BackboneConfig",
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
    "learner_group_node",
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
_MODULATION = ModulationSpec()  # the defaults of the modulation.* settings


def backbone_default(setting: str, value: Any = None) -> Any:
    """``value`` (a recipe's own), or for ``None`` the interpolation that resolves to the
    selected backbone's own default of ``setting`` (``channels`` or ``style``; resolver
    ``kml_backbone_default``, :mod:`kml.config.compose`)."""
    if value is None:
        return "${kml_backbone_default:${.name}," + setting + "}"
    return list(value) if isinstance(value, (tuple, list)) else value


@dataclass
class BackboneConfig:
    name: str = _DEFAULT.backbone  # conv4 | resnet12 | a registered backbone
    # the backbone's downsampling: Conv-4 strided (MMAML/KML, its default) | maxpool (classic
    # MAML); ResNet-12 maxpool (its only style). Default: the backbone's own
    style: Optional[str] = backbone_default("style", _DEFAULT.style)
    # the widths; null or the default: the backbone's own (Conv-4 32-64-128-256, ResNet-12 64-160-320-640)
    channels: Optional[list[int]] = field(default_factory=lambda: backbone_default("channels", _DEFAULT.channels))
    bn_affine: bool = _DEFAULT.bn_affine
    # conv biases and KML's db(v): exactly cancelled by the batch-statistics BN after each
    # conv; true keeps the paper's and the published code's parameters, false drops them
    bias: bool = _DEFAULT.bias
    pool: str = _DEFAULT.pool  # avg | flatten


@dataclass
class SpecialistConfig:
    """Overrides for Multi-* specialists (one learner per mode, ``multi=true``)."""

    iterations: Optional[int] = None
    meta_batch_size: Optional[int] = None
    inner_lr: Optional[float] = None
    inner_steps: Optional[int] = None
    # per-dataset overrides of iterations / meta_batch_size / inner_lr / inner_steps, e.g.
    # {omniglot: {inner_lr: 0.4, inner_steps: 1, meta_batch_size: 10, iterations: 60000}}
    per_dataset: dict[str, Any] = field(default_factory=dict)


@dataclass
class LearnerConfig:
    """The learner; ``learner=maml|protonet`` sets every field to that learner's recipe
    (:mod:`kml.recipes`)."""

    name: str = DEFAULT_LEARNER  # maml | protonet | a registered learner
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # MAML only
    inner_steps: int = _DEFAULT.inner_steps
    inner_lr: float = _DEFAULT.inner_lr
    eval_inner_steps: Optional[int] = None
    first_order: bool = _DEFAULT.first_order
    grad_clip: Optional[float] = _DEFAULT.grad_clip
    specialist: SpecialistConfig = field(default_factory=SpecialistConfig)
    # ProtoNet only (kml.learners.ProtoNet); the defaults are the paper's text
    query_modulation: str = QUERY_MODULATIONS[0]  # support | query (published code: query images' embedding)
    prototype_refinement: str = PROTOTYPE_REFINEMENTS[0]  # none | soft | published
    batch_norm: str = BATCH_NORMS[0]  # separate | joint (support and query normalised together)


@dataclass
class ProtocolConfig:
    """The ``protocol=paper|published`` group: which protocol the ProtoNet family follows
    (``configs/protocol/<name>.yaml`` sets the learner and modulation keys it implies)."""

    name: str = PROTOCOLS[0]


@dataclass
class ModulationConfig:
    name: str = "kml"  # none | film | kml | a registered modulation
    task_dim: int = _MODULATION.task_dim
    # the task encoder (a Conv-4); default: a Conv-4 backbone's channels, else Conv-4's 32-64-128-256
    encoder_channels: Optional[list[int]] = None
    hidden: list[int] = field(default_factory=lambda: list(_MODULATION.hidden))
    # KML only
    rank: int = _MODULATION.rank
    factorization: str = _MODULATION.factorization  # channel | published | full (Conv-4 only)
    identity: bool = _MODULATION.identity  # W * (1 + M); false: W * M (published code)
    # default: kml's start (the identity modulation, a Xavier-uniform task encoder); published:
    # the published code's (PyTorch's default init of the mask heads and the encoder; needs identity=false)
    init: str = _MODULATION.init
    # a registered modulation's own settings, checked by its layer class (check_spec)
    options: dict[str, Any] = field(default_factory=dict)


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
    learner: LearnerConfig = field(default_factory=LearnerConfig)
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


def learner_group_node(learner: str) -> dict:
    """The ``learner=<learner>`` config group option: the learner's recipe as config
    values (``learner.*`` and its ``train.*`` budget)."""
    r = RECIPES[learner]
    return {
        "learner": {
            "name": learner,
            "backbone": {"name": r.backbone, "style": backbone_default("style", r.style),
                         "channels": backbone_default("channels", None if r.channels is None else list(r.channels)),
                         "bn_affine": r.bn_affine, "pool": r.pool, "bias": r.bias},
            "inner_steps": r.inner_steps,
            "inner_lr": r.inner_lr,
            "first_order": r.first_order,
            "grad_clip": r.grad_clip,
            "specialist": {
                "iterations": None,
                "meta_batch_size": None,
                "inner_lr": None,
                "inner_steps": None,
                **plain(r.specialist),
            },
        },
        "train": {
            "iterations": r.iterations,
            "meta_batch_size": r.meta_batch_size,
            "lr": r.lr,
            "scheduler": {"step_size": r.scheduler_step_size, "gamma": r.scheduler_gamma},
        },
    }


def validate(cfg: DictConfig | RunConfig, saved: bool = False) -> None:
    """Import the modules of ``imports``, then check ranges and consistency of a composed
    run config: registered names, each backbone's and modulation's own settings.

    Args:
        saved: ``cfg`` is a run's saved config (evaluated or resumed). Its protocol was
            checked when it was trained, so it is not checked against what ``protocol=``
            sets today: a record that predates an option the protocol has since gained
            (``modulation.init``) keeps its name and loads with that option's default.

    Raises:
        ConfigError: naming the offending key and the allowed values.
    """
    import kml.catalogue  # noqa: F401  (the built-in names register)
    from kml.backbone import get_backbone, list_backbones
    from kml.learners import get_learner, list_learners
    from kml.modulation import get_modulation, list_modulations

    register_resolvers()  # the backbone defaults of learner.backbone.channels and .style
    c = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    import_user_modules(c.get("imports"))
    reject_unknown_keys(c, RunConfig)
    choice(c.learner.name, list_learners(), "learner.name", registered=True)
    choice(c.modulation.name, list_modulations(), "modulation.name", registered=True)
    # before its defaults resolve
    choice(c.learner.backbone.name, list_backbones(), "learner.backbone.name", registered=True)
    resolves(c)
    backbone = get_backbone(c.learner.backbone.name)
    if c.learner.backbone.style is not None:
        choice(c.learner.backbone.style, backbone.styles, "learner.backbone.style")
    choice(c.learner.backbone.pool, backbone.pools, "learner.backbone.pool")
    choice(c.learner.query_modulation, QUERY_MODULATIONS, "learner.query_modulation")
    choice(c.learner.prototype_refinement, PROTOTYPE_REFINEMENTS, "learner.prototype_refinement")
    choice(c.learner.batch_norm, BATCH_NORMS, "learner.batch_norm")
    choice(c.protocol.name, PROTOCOLS, "protocol")
    # the protocol first: its message names the override that contradicts it
    _check_protocol(c, get_learner(c.learner.name).protocol_options, saved)
    try:
        spec = ModulationSpec.from_config(c.modulation)
        layer = get_modulation(spec.name)
        if layer is not None:
            layer.check_spec(spec)
    except ValueError as err:
        raise ConfigError(f"modulation.{err}") from None
    channels = c.learner.backbone.channels
    if channels is not None and (not channels or any(ch < 1 for ch in channels)):
        raise ConfigError("learner.backbone.channels must be a non-empty list of positive integers")
    try:
        backbone.check_options(channels=None if channels is None else list(channels), style=c.learner.backbone.style,
                               pool=c.learner.backbone.pool, modulation=spec)
    except ValueError as err:
        raise ConfigError(f"learner.backbone.name={c.learner.backbone.name}: {err}") from None
    choice(c.eval.checkpoint, ("last", "best"), "eval.checkpoint")
    choice(str(c.train.vectorized).lower(), ("auto", "true", "false"), "train.vectorized")
    choice(c.eval.split, ("train", "val", "test"), "eval.split")
    choice(c.train.precision, ("fp32", "bf16"), "train.precision")
    choice(str(c.train.cuda_graphs).lower(), ("auto", "true", "false"), "train.cuda_graphs")
    choice(c.train.per_task_conv, PER_TASK_CONVS, "train.per_task_conv")
    if c.train.per_task_conv == "shared":
        _check_shared_conv(c, get_learner(c.learner.name), get_modulation(spec.name), spec)
    at_least(c.episode.ways, 2, "episode.ways")
    at_least(c.episode.shots, 1, "episode.shots")
    at_least(c.episode.queries, 1, "episode.queries")
    at_least(c.train.iterations, 1, "train.iterations")
    at_least(c.train.meta_batch_size, 1, "train.meta_batch_size")
    at_least(c.train.lr, 0, "train.lr", strict=True)
    at_least(c.train.lr_modulation, 0, "train.lr_modulation", strict=True)
    at_least(c.train.checkpoint_every, 1, "train.checkpoint_every")
    at_least(c.train.log_every, 1, "train.log_every")
    at_least(c.train.overfit_batches, 0, "train.overfit_batches")
    at_least(c.train.scheduler.step_size, 0, "train.scheduler.step_size")
    at_least(c.train.scheduler.gamma, 0, "train.scheduler.gamma", strict=True)
    at_least(c.learner.inner_steps, 0, "learner.inner_steps")
    at_least(c.learner.eval_inner_steps, 0, "learner.eval_inner_steps")
    at_least(c.learner.inner_lr, 0, "learner.inner_lr", strict=True)
    at_least(c.learner.grad_clip, 0, "learner.grad_clip")
    at_least(c.eval.tasks_per_mode, 1, "eval.tasks_per_mode")
    at_least(c.eval.batch_size, 1, "eval.batch_size")
    at_least(c.eval.val_every, 0, "eval.val_every")
    at_least(c.eval.val_tasks_per_mode, 1, "eval.val_tasks_per_mode")
    if c.eval.checkpoint == "best" and not c.eval.val_every:
        raise ConfigError(
            "eval.checkpoint=best tests the checkpoint with the best val accuracy, but validation is off; "
            "set eval.val_every=<iterations> (e.g. 500) or use eval.checkpoint=last"
        )
    if c.logger.wandb is not None and c.logger.wandb.mode is not None:
        choice(c.logger.wandb.mode, ("online", "offline", "disabled"), "logger.wandb.mode")
    at_least(c.data.image_size, 8, "data.image_size")
    if not c.mode.datasets:
        raise ConfigError("mode.datasets is empty; list at least one dataset, e.g. mode.datasets=[omniglot]")
    spec = c.learner.specialist
    at_least(spec.iterations, 1, "learner.specialist.iterations")
    at_least(spec.meta_batch_size, 1, "learner.specialist.meta_batch_size")
    at_least(spec.inner_lr, 0, "learner.specialist.inner_lr", strict=True)
    at_least(spec.inner_steps, 0, "learner.specialist.inner_steps")


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
    ``protocol_options``); joint BN takes one modulation."""
    if not protocol_options and c.protocol.name != PROTOCOLS[0]:
        raise ConfigError(
            f"protocol={c.protocol.name} is the published KML code's protocol, which exists for the ProtoNet "
            f"family only; use learner=protonet, or drop protocol={c.protocol.name} for learner={c.learner.name}"
        )
    for key, default in (("query_modulation", QUERY_MODULATIONS[0]),
                         ("prototype_refinement", PROTOTYPE_REFINEMENTS[0]), ("batch_norm", BATCH_NORMS[0])):
        if key not in protocol_options and c.learner[key] != default:
            raise ConfigError(
                f"learner.{key}={c.learner[key]} is a ProtoNet option; learner={c.learner.name} takes only "
                f"learner.{key}={default}"
            )
    if not saved:
        _check_protocol_settings(c)
    if c.learner.prototype_refinement == "published" and int(c.episode.shots) > 1:
        raise ConfigError(
            f"learner.prototype_refinement=published reproduces the published code at 1-shot only, and this run has "
            f"episode.shots={c.episode.shots}; use episode.shots=1, or learner.prototype_refinement=soft|none"
        )
    if c.learner.batch_norm == "joint" and c.learner.query_modulation == "query":
        raise ConfigError(
            "learner.batch_norm=joint normalises support and query in one pass with the support set's modulation; "
            "it cannot be combined with learner.query_modulation=query: drop one of the two"
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
