"""The paper's recipe of each learner: its backbone's settings and its training budget.

:func:`kml.learners.build_learner`, the ``learner=<name>`` config groups and the benchmark
read them from here, so the Python API and the command line build the same method. A
learner's own settings (MAML's inner loop, ProtoNet's protocol) are declared by its class
(``Options``, :class:`kml.learners.MAMLOptions`), their one source. Importable without
torch (the config schema reads it).

- ``maml``: MAML as in MMAML's code (REFERENCE of the paper's baselines): Conv-4
  (its own 32-64-128-256, stride 2), BN without affine parameters, global average pool,
  linear head (the inner loop, 5 second-order steps of lr 0.05 with inner gradients
  clamped to [-20, 20], is :class:`kml.learners.MAMLOptions`); Adam 1e-3, 60k
  iterations, meta-batch 10 (20-way: 80k iterations,
  meta-batch 5). Multi-MAML specialists: inner lr 0.01, 5 steps, meta-batch 4,
  80k iterations; the Omniglot specialist inner lr 0.4, 1 step, meta-batch 10, 60k
  iterations.
- ``protonet``: ProtoNet as in the published KML code: the same Conv-4 with affine
  BN and flattened features; Adam 1e-3 halved every 10k iterations, 30k
  iterations, meta-batch 10. Multi-ProtoNet specialists train with the same recipe.

A recipe leaves the backbone's widths and downsampling style to the backbone
(``None``: Conv-4's 32-64-128-256 with stride-2 convolutions, ResNet-12's 64-160-320-640
with max-pooling). The modulation defaults (task embedding of 128, generators with no
hidden layer, rank-1 channel-aligned factors, ``W * (1 + M)``) are
:data:`MODULATION_DEFAULTS`, a :class:`~kml.modulation_spec.ModulationSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from kml.modulation_spec import ModulationSpec
from kml.registry import get_learner

__all__ = [
    "Recipe",
    "ModulationDefaults",
    "RECIPES",
    "MODULATION_DEFAULTS",
    "EpisodeDefaults",
    "EPISODE_DEFAULTS",
    "DEFAULT_LEARNER",
    "QUERY_MODULATIONS",
    "PROTOTYPE_REFINEMENTS",
    "BATCH_NORMS",
    "PROTOCOLS",
    "recipe",
]


@dataclass(frozen=True)
class Recipe:
    """Backbone, inner loop and training budget of one learner.

    Attributes:
        style, channels, bn_affine, pool, bias: the backbone's settings; ``style`` and
            ``channels`` ``None``: the backbone's own (:class:`~kml.nets.Conv4`: strided,
            32-64-128-256).
        iterations, meta_batch_size, lr, scheduler_step_size, scheduler_gamma: outer training.
        specialist: overrides for Multi-* specialists (``iterations``, ``meta_batch_size``,
            ``inner_lr``, ``inner_steps`` and ``per_dataset: {dataset: {...}}``).
    """

    style: str | None
    channels: tuple[int, ...] | None
    bn_affine: bool
    pool: str
    iterations: int
    meta_batch_size: int
    lr: float
    scheduler_step_size: int
    scheduler_gamma: float = 0.5
    bias: bool = True
    specialist: Mapping[str, Any] = field(default_factory=dict)
    backbone: str = "conv4"


#: the defaults of the task encoder and the generators (FiLM and KML): a
#: :class:`~kml.modulation_spec.ModulationSpec` (the name kml 0.1 gave them)
ModulationDefaults = ModulationSpec


RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {
        "maml": Recipe(
            style=None,
            channels=None,
            bn_affine=False,
            pool="avg",
            iterations=60000,
            meta_batch_size=10,
            lr=1e-3,
            scheduler_step_size=0,
            specialist=MappingProxyType(
                {
                    "iterations": 80000,
                    "meta_batch_size": 4,
                    "inner_lr": 0.01,
                    "inner_steps": 5,
                    "per_dataset": MappingProxyType(
                        {"omniglot": MappingProxyType(
                            {"inner_lr": 0.4, "inner_steps": 1, "meta_batch_size": 10, "iterations": 60000}
                        )}
                    ),
                }
            ),
        ),
        "protonet": Recipe(
            style=None,
            channels=None,
            bn_affine=True,
            pool="flatten",
            iterations=30000,
            meta_batch_size=10,
            lr=1e-3,
            scheduler_step_size=10000,
            scheduler_gamma=0.5,
        ),
    }
)

MODULATION_DEFAULTS = ModulationSpec()


@dataclass(frozen=True)
class EpisodeDefaults:
    """The paper's task shape: 5-way 1-shot with 15 queries per class (``episode.*``)."""

    ways: int = 5
    shots: int = 1
    queries: int = 15


EPISODE_DEFAULTS = EpisodeDefaults()

#: the learner of the embedded default run (MProtoNet+KML)
DEFAULT_LEARNER = "protonet"

# The ProtoNet family's protocol options (:class:`~kml.learners.ProtoNet`). The first of
# each is the default: the paper's text. The others reproduce the published KML code.
#: what modulates the query features: the support set's embedding, or the query images'
QUERY_MODULATIONS = ("support", "query")
#: the prototypes: support class means, one soft k-means step, or the published code's step
PROTOTYPE_REFINEMENTS = ("none", "soft", "published")
#: batch statistics of support and query: each its own, or joint
BATCH_NORMS = ("separate", "joint")
#: how a convolution with one kernel per task runs (``train.per_task_conv``, :func:`kml.functional.per_task_conv`)
PER_TASK_CONVS = ("grouped", "channels_last", "unfold", "shared")
#: the ``protocol=`` config group: the paper's text, or the published code's protocol
PROTOCOLS = ("paper", "published")


def recipe(learner: str) -> Recipe:
    """The recipe of a learner: ``"maml"``, ``"protonet"`` or one registered with
    :func:`kml.learners.register_learner`."""
    if learner in RECIPES:
        return RECIPES[learner]
    return get_learner(learner).recipe


def plain(value: Any) -> Any:
    """A recipe value as plain ``dict`` / ``list`` (for configs and JSON)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
