"""Structured configuration of a meta-training run (the schema behind ``configs/``).

The dataclasses below are registered with Hydra's ConfigStore as the schema of
``configs/config.yaml``, so an unknown key or a value of the wrong type is
rejected when the config is composed. :func:`validate` adds the range checks
(ways >= 2, learning rates > 0, ...) and raises :class:`kml.errors.KmlError`
with a message that names the key and the fix. The library itself never reads
global config: entry points pass these objects (or plain values) down.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from kml.errors import KmlError
from kml.learners.recipes import DEFAULT_LEARNER, MODULATION_DEFAULTS, RECIPES, plain

__all__ = [
    "EpisodeConfig",
    "ModeConfig",
    "BackboneConfig",
    "LearnerConfig",
    "ModulationConfig",
    "SchedulerConfig",
    "TrainConfig",
    "EvalConfig",
    "DataConfig",
    "RunConfig",
    "ConfigError",
    "validate",
    "unknown_keys",
    "unknown_key_message",
    "register_configs",
]


class ConfigError(KmlError):
    """A config value out of range or inconsistent."""


@dataclass
class EpisodeConfig:
    ways: int = 5
    shots: int = 1
    queries: int = 15


@dataclass
class ModeConfig:
    """A task distribution: one dataset or a multimodal mixture."""

    name: str = "synthetic"
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])


_DEFAULT = RECIPES[DEFAULT_LEARNER]  # the schema's defaults: the default learner's recipe


@dataclass
class BackboneConfig:
    style: str = _DEFAULT.style  # strided (MMAML/KML) | maxpool (classic MAML)
    channels: list[int] = field(default_factory=lambda: list(_DEFAULT.channels))
    bn_affine: bool = _DEFAULT.bn_affine
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
    (:mod:`kml.learners.recipes`)."""

    name: str = DEFAULT_LEARNER  # maml | protonet
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # MAML only
    inner_steps: int = _DEFAULT.inner_steps
    inner_lr: float = _DEFAULT.inner_lr
    eval_inner_steps: Optional[int] = None
    first_order: bool = _DEFAULT.first_order
    grad_clip: Optional[float] = _DEFAULT.grad_clip
    specialist: SpecialistConfig = field(default_factory=SpecialistConfig)


@dataclass
class ModulationConfig:
    name: str = "kml"  # none | film | kml
    task_dim: int = MODULATION_DEFAULTS.task_dim
    encoder_channels: Optional[list[int]] = None  # default: the backbone's channels
    hidden: list[int] = field(default_factory=lambda: list(MODULATION_DEFAULTS.hidden))
    # KML only
    rank: int = MODULATION_DEFAULTS.rank
    factorization: str = MODULATION_DEFAULTS.factorization  # channel | published | full
    identity: bool = MODULATION_DEFAULTS.identity  # W * (1 + M); false: W * M (published code)


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
    progress: bool = True


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
class DataConfig:
    root: str = "data"
    image_size: int = 84
    replacement: bool = False  # sample images with replacement when a class is too small


@dataclass
class RunConfig:
    mode: ModeConfig = field(default_factory=ModeConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    modulation: ModulationConfig = field(default_factory=ModulationConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    multi: bool = False  # Multi-* specialists: one learner per mode
    resume: Optional[str] = None  # run directory to continue


def learner_group_node(learner: str) -> dict:
    """The ``learner=<learner>`` config group option: the learner's recipe as config
    values (``learner.*`` and its ``train.*`` budget)."""
    r = RECIPES[learner]
    return {
        "learner": {
            "name": learner,
            "backbone": {"style": r.style, "channels": list(r.channels), "bn_affine": r.bn_affine, "pool": r.pool},
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


def register_configs() -> None:
    """Register :class:`RunConfig` as ``config_schema`` in Hydra's ConfigStore, and the
    ``learner`` group options from the recipes (:mod:`kml.learners.recipes`)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="config_schema", node=RunConfig)
    for learner in RECIPES:
        store.store(group="learner", name=learner, node=learner_group_node(learner), package="_global_")


def _choice(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not valid; use one of: {', '.join(allowed)}")


def _at_least(value: float | int | None, minimum: float, key: str, strict: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value} is not a finite number; pass a number {'>' if strict else '>='} {minimum}")
    bad = value <= minimum if strict else value < minimum
    if bad:
        relation = ">" if strict else ">="
        raise ConfigError(f"{key}={value} is out of range: it must be {relation} {minimum}")


def _fields(schema: type) -> dict[str, Any]:
    """``{name: type}`` of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _nested_schema(tp: Any) -> type | None:
    """The config dataclass behind a field type (``X`` or ``Optional[X]``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def unknown_keys(cfg: DictConfig, schema: type) -> list[str]:
    """Dotted keys of ``cfg`` that ``schema`` does not define (added with ``+key=...``),
    and dataclass-typed keys that were deleted (``~key``)."""

    def walk(value: dict, node: type, prefix: str) -> list[str]:
        fields = _fields(node)
        out = [prefix + key for key in value if key not in fields]
        for key, tp in fields.items():
            nested = _nested_schema(tp)
            if nested is None:
                continue
            if key not in value and typing.get_origin(tp) is None:
                out.append(prefix + key)  # a whole section was deleted
            elif isinstance(value.get(key), dict):
                out += walk(value[key], nested, prefix + key + ".")
        return out

    return walk(OmegaConf.to_container(cfg, resolve=False), schema, "")


def unknown_key_message(key: str, schema: type) -> str:
    """One line naming an unknown dotted ``key``, the closest valid key and the valid keys
    at that level of ``schema``."""
    node, prefix = schema, []
    for part in key.split("."):
        fields = _fields(node)
        if part not in fields:
            where = ".".join(prefix)
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {'.'.join(prefix + close)}?)" if close else ""
            level = f"of {where}" if where else "at the top level"
            return f"unknown config key {key!r}{hint}; valid keys {level}: {', '.join(fields)}"
        nested = _nested_schema(fields[part])
        if nested is None:
            return f"unknown config key {key!r}: {'.'.join(prefix + [part])} is a value, not a section"
        node = nested
        prefix.append(part)
    return f"config key {key!r} is missing; do not delete it (~{key})"


def _resolves(c: DictConfig) -> None:
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(c, resolve=True)
    except OmegaConfBaseException as err:
        where = getattr(err, "full_key", None)
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"config value {where or ''} cannot be resolved ({detail}); fix or remove that override".replace("  ", " ")
        ) from None


def validate(cfg: DictConfig | RunConfig) -> None:
    """Check ranges and consistency of a composed run config.

    Raises:
        ConfigError: naming the offending key and the allowed values.
    """
    from kml.learners import LEARNERS
    from kml.modulation import FACTORIZATIONS
    from kml.nets import MODULATIONS, POOLS, STYLES

    c = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    extra = unknown_keys(c, RunConfig)
    if extra:
        added = OmegaConf.select(c, extra[0], default=None, throw_on_resolution_failure=False) is not None
        hint = "; remove it (a '+key=value' override adds keys)" if added else ""
        raise ConfigError(unknown_key_message(extra[0], RunConfig) + hint)
    _resolves(c)
    _choice(c.learner.name, LEARNERS, "learner.name")
    _choice(c.modulation.name, MODULATIONS, "modulation.name")
    _choice(c.learner.backbone.style, STYLES, "learner.backbone.style")
    _choice(c.learner.backbone.pool, POOLS, "learner.backbone.pool")
    _choice(c.modulation.factorization, FACTORIZATIONS, "modulation.factorization")
    _choice(c.eval.checkpoint, ("last", "best"), "eval.checkpoint")
    _choice(str(c.train.vectorized).lower(), ("auto", "true", "false"), "train.vectorized")
    _choice(c.eval.split, ("train", "val", "test"), "eval.split")
    _choice(c.train.precision, ("fp32", "bf16"), "train.precision")
    _choice(str(c.train.cuda_graphs).lower(), ("auto", "true", "false"), "train.cuda_graphs")
    _at_least(c.episode.ways, 2, "episode.ways")
    _at_least(c.episode.shots, 1, "episode.shots")
    _at_least(c.episode.queries, 1, "episode.queries")
    _at_least(c.train.iterations, 1, "train.iterations")
    _at_least(c.train.meta_batch_size, 1, "train.meta_batch_size")
    _at_least(c.train.lr, 0, "train.lr", strict=True)
    _at_least(c.train.lr_modulation, 0, "train.lr_modulation", strict=True)
    _at_least(c.train.checkpoint_every, 1, "train.checkpoint_every")
    _at_least(c.train.log_every, 1, "train.log_every")
    _at_least(c.train.scheduler.step_size, 0, "train.scheduler.step_size")
    _at_least(c.train.scheduler.gamma, 0, "train.scheduler.gamma", strict=True)
    _at_least(c.learner.inner_steps, 0, "learner.inner_steps")
    _at_least(c.learner.eval_inner_steps, 0, "learner.eval_inner_steps")
    _at_least(c.learner.inner_lr, 0, "learner.inner_lr", strict=True)
    _at_least(c.learner.grad_clip, 0, "learner.grad_clip")
    _at_least(c.modulation.task_dim, 1, "modulation.task_dim")
    _at_least(c.modulation.rank, 1, "modulation.rank")
    _at_least(c.eval.tasks_per_mode, 1, "eval.tasks_per_mode")
    _at_least(c.eval.batch_size, 1, "eval.batch_size")
    _at_least(c.eval.val_every, 0, "eval.val_every")
    _at_least(c.eval.val_tasks_per_mode, 1, "eval.val_tasks_per_mode")
    if c.eval.checkpoint == "best" and not c.eval.val_every:
        raise ConfigError(
            "eval.checkpoint=best tests the checkpoint with the best val accuracy, but validation is off; "
            "set eval.val_every=<iterations> (e.g. 500) or use eval.checkpoint=last"
        )
    _at_least(c.data.image_size, 8, "data.image_size")
    if not c.learner.backbone.channels or any(ch < 1 for ch in c.learner.backbone.channels):
        raise ConfigError("learner.backbone.channels must be a non-empty list of positive integers")
    if not c.mode.datasets:
        raise ConfigError("mode.datasets is empty; list at least one dataset, e.g. mode.datasets=[omniglot]")
    spec = c.learner.specialist
    _at_least(spec.iterations, 1, "learner.specialist.iterations")
    _at_least(spec.meta_batch_size, 1, "learner.specialist.meta_batch_size")
    _at_least(spec.inner_lr, 0, "learner.specialist.inner_lr", strict=True)
    _at_least(spec.inner_steps, 0, "learner.specialist.inner_steps")


@dataclass
class EvalOverrides:
    tasks_per_mode: Optional[int] = None
    split: Optional[str] = None
    batch_size: Optional[int] = None


@dataclass
class EvalScriptConfig:
    """``scripts/eval.py``: evaluate a saved run on its fixed test tasks."""

    run_dir: Optional[str] = None
    checkpoint: Optional[str] = None  # last (default), an iteration number, or a path
    eval: EvalOverrides = field(default_factory=EvalOverrides)
    device: str = "auto"
    output: Optional[str] = None  # default: <run_dir>/eval_<checkpoint>_<split>.json
    progress: bool = True


@dataclass
class CompareScriptConfig:
    """``scripts/compare.py``: the paper-style table of several runs."""

    run_dirs: list[str] = field(default_factory=list)  # run directories or globs
    baseline: Optional[str] = None  # method name or run directory for paired differences; default: the first run
    output: str = "comparison.md"


def register_script_configs() -> None:
    """Register the schemas of ``configs/eval.yaml`` and ``configs/compare.yaml``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="eval_schema", node=EvalScriptConfig)
    store.store(name="compare_schema", node=CompareScriptConfig)


@dataclass
class BenchScriptConfig:
    """``scripts/bench.py``: speed of meta-training and evaluation (see docs/performance.md).

    ``preset`` picks the defaults of the device: ``cpu`` (small images so the suite
    takes minutes on a laptop) or ``gpu`` (paper settings, 84x84); ``auto`` by device.
    Any value set here overrides the preset.
    """

    device: str = "auto"
    preset: str = "auto"  # auto | cpu | gpu
    sections: Optional[list[str]] = None  # paths cuda_graphs determinism eval meta_batch inner_steps peer paper_cpu options eval_1000
    image_size: Optional[int] = None
    shots: Optional[list[int]] = None
    meta_batch_sizes: Optional[list[int]] = None
    inner_steps: Optional[list[int]] = None
    repeats: Optional[int] = None
    warmup: Optional[int] = None
    eval_tasks: Optional[int] = None
    output_dir: str = "bench_results"


def register_bench_config() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="bench_schema", node=BenchScriptConfig)


@dataclass
class CampaignMethod:
    """One method of a campaign: a learner, a modulation, Multi-* or not, and any extra
    config overrides of its runs."""

    name: str = MISSING  # the display name, e.g. MProtoNet+KML (and the paired-test label)
    learner: str = MISSING  # maml | protonet
    modulation: str = "none"  # none | film | kml
    multi: bool = False  # Multi-* specialists
    overrides: list[str] = field(default_factory=list)  # extra overrides of this method's runs


@dataclass
class CampaignBudget:
    """The budget of every run of a campaign (the train.py overrides it sets)."""

    image_size: int = 84
    iterations: int = 1000
    meta_batch_size: Optional[int] = None  # default: the learner's recipe
    checkpoint_every: int = 1000
    log_every: int = 50
    eval_tasks_per_mode: int = 1000
    val_every: int = 0
    val_tasks_per_mode: int = 200
    eval_checkpoint: str = "last"  # last | best


@dataclass
class CampaignTransference:
    """Transference histograms of some of a campaign's runs at several checkpoints."""

    methods: list[str] = field(default_factory=list)  # method names; empty: no transference
    source_mode: str = MISSING
    source_split: str = "train"
    target_mode: str = MISSING
    target_split: str = "test"
    checkpoints: list[int] = field(default_factory=list)
    sources: int = 300
    targets: int = 1
    alpha: float = MISSING  # the source step size (the paper states none: a choice)
    neutral: float = 0.01  # |LR - 1| <= neutral is neutral transfer (the paper states none: a choice)
    seed: int = 0


@dataclass
class PaperReference:
    """The paper's numbers for the closest setting, shown in their own column."""

    setting: str = ""  # e.g. "2Mode, 5-way 1-shot (84x84, 60k iterations)"
    note: str = ""  # how our setting differs
    values: dict[str, float] = field(default_factory=dict)  # method name -> accuracy (%)


@dataclass
class CampaignConfig:
    """A campaign (``configs/campaign/<name>.yaml``): methods x modes x shots x seeds
    under one budget, the paired comparisons to report and, optionally, transference."""

    name: str = MISSING
    title: str = ""
    description: str = ""
    order: int = 0  # position in docs/results.md
    modes: list[str] = field(default_factory=list)  # mode configs (configs/mode/<name>.yaml)
    ways: int = 5
    shots: list[int] = field(default_factory=lambda: [1])
    seeds: list[int] = field(default_factory=lambda: [0])
    methods: list[CampaignMethod] = field(default_factory=list)
    baseline: str = MISSING  # method name every other method is paired against
    pairs: list[list[str]] = field(default_factory=list)  # further [method, reference] paired comparisons
    budget: CampaignBudget = field(default_factory=CampaignBudget)
    overrides: list[str] = field(default_factory=list)  # train.py overrides of every run
    paper: PaperReference = field(default_factory=PaperReference)
    transference: CampaignTransference = field(default_factory=CampaignTransference)


@dataclass
class ReproduceScriptConfig:
    """``scripts/reproduce.py campaign=<name>``: run a campaign, keep its records, write the report."""

    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    dry_run: bool = False  # print the plan and an estimated time, run nothing
    report_only: bool = False  # rebuild the report from the records in results_dir only
    max_runs: int = 0  # stop after this many runs (0: all); a campaign can continue elsewhere
    data_root: str = "data"  # prepared datasets
    work_dir: str = "outputs/campaigns"  # run directories (checkpoints live here, never in results_dir)
    results_dir: str = "results"  # the small records of finished runs, one folder per campaign
    report: str = "docs/results.md"  # the report of every campaign in results_dir
    figures_dir: str = "docs/figures"
    device: str = "auto"
    progress: bool = True


def register_reproduce_config() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="reproduce_schema", node=ReproduceScriptConfig)
