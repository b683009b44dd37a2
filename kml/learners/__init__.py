"""Meta-learners: MAML and ProtoNet, each with modulation none / FiLM / KML.

==============  ============  ==================
learner         modulation    method (paper name)
==============  ============  ==================
``maml``        ``none``      MAML
``maml``        ``film``      MMAML
``maml``        ``kml``       MMAML+KML
``protonet``    ``none``      ProtoNet
``protonet``    ``film``      MProtoNet
``protonet``    ``kml``       MProtoNet+KML
==============  ============  ==================
"""

from __future__ import annotations

import warnings
from typing import Sequence

from kml.learners.base import LearnerOutput, MetaLearner, upgrade_state_dict
from kml.learners.maml import MAML
from kml.learners.protonet import (
    ProtoNet,
    published_refined_prototypes,
    prototypes,
    soft_refined_prototypes,
    squared_euclidean_logits,
)
from kml.recipes import (
    BATCH_NORMS,
    MODULATION_DEFAULTS,
    PROTOTYPE_REFINEMENTS,
    QUERY_MODULATIONS,
    RECIPES,
    Recipe,
    recipe,
)
from kml.nets import MODULATIONS, Conv4, TaskEncoder

__all__ = [
    "LearnerOutput",
    "MetaLearner",
    "MAML",
    "ProtoNet",
    "prototypes",
    "squared_euclidean_logits",
    "soft_refined_prototypes",
    "published_refined_prototypes",
    "build_learner",
    "method_name",
    "upgrade_state_dict",
    "LEARNERS",
    "RECIPES",
    "Recipe",
    "recipe",
]

LEARNERS = tuple(RECIPES)

_METHOD_NAMES = {
    ("maml", "none"): "MAML",
    ("maml", "film"): "MMAML",
    ("maml", "kml"): "MMAML+KML",
    ("protonet", "none"): "ProtoNet",
    ("protonet", "film"): "MProtoNet",
    ("protonet", "kml"): "MProtoNet+KML",
}

# names build_learner took in kml 0.1
_RENAMED = {"generator_hidden": "hidden", "kml_rank": "rank", "kml_factorization": "factorization",
            "kml_identity": "identity"}
_UNSET = object()


def method_name(learner: str, modulation: str, multi: bool = False) -> str:
    """The paper's name of a method, e.g. ``("maml", "kml") -> "MMAML+KML"``;
    ``multi=True`` gives the per-mode specialists ``Multi-MAML`` / ``Multi-ProtoNet``."""
    if multi:
        return "Multi-" + _METHOD_NAMES[(learner, "none")] + ("" if modulation == "none" else f"({modulation})")
    return _METHOD_NAMES[(learner, modulation)]


def build_learner(
    learner: str,
    modulation: str = "none",
    ways: int = 5,
    *,
    in_channels: int = 3,
    image_size: int = 84,
    channels: Sequence[int] | None = None,
    style: str | None = None,
    bn_affine: bool | None = None,
    bias: bool | None = None,
    pool: str | None = None,
    task_dim: int = MODULATION_DEFAULTS.task_dim,
    encoder_channels: Sequence[int] | None = None,
    hidden: Sequence[int] = MODULATION_DEFAULTS.hidden,
    rank: int = MODULATION_DEFAULTS.rank,
    factorization: str = MODULATION_DEFAULTS.factorization,
    identity: bool = MODULATION_DEFAULTS.identity,
    inner_steps: int | None = None,
    inner_lr: float | None = None,
    first_order: bool | None = None,
    grad_clip: float | None | object = _UNSET,
    eval_inner_steps: int | None = None,
    query_modulation: str = QUERY_MODULATIONS[0],
    prototype_refinement: str = PROTOTYPE_REFINEMENTS[0],
    batch_norm: str = BATCH_NORMS[0],
    **renamed,
) -> MetaLearner:
    """Build any of the six methods with the paper's recipe (:mod:`kml.recipes`).

    Args:
        learner: ``"maml"`` or ``"protonet"``.
        modulation: ``"none"``, ``"film"`` or ``"kml"``.
        ways: classes per task (MAML's head).
        in_channels, image_size: the images.
        channels, style, bn_affine, pool, bias: the :class:`~kml.nets.Conv4` backbone.
            Default: the learner's recipe (MAML: strided 32-64-128-256, BN without
            affine parameters, average pool; ProtoNet: the same with affine BN and
            flattened features), the same values as ``learner=maml|protonet`` on the
            command line.
        task_dim, encoder_channels: the task encoder (a strided Conv-4 with
            ``encoder_channels``, default: ``channels``) and its embedding size.
        hidden, rank, factorization, identity: the generators (see
            :class:`~kml.modulation.KernelGenerator`); as the ``modulation.*`` config keys.
        inner_steps, inner_lr, first_order, grad_clip, eval_inner_steps: MAML's inner
            loop (default: the recipe's); ignored by ProtoNet.
        query_modulation, prototype_refinement, batch_norm: ProtoNet's protocol (see
            :class:`~kml.learners.ProtoNet`); the defaults are the paper's text. MAML
            accepts only the defaults.

    The names ``generator_hidden``, ``kml_rank``, ``kml_factorization`` and
    ``kml_identity`` of kml 0.1 are still accepted, with a ``DeprecationWarning``.
    """
    if renamed:
        unknown = sorted(set(renamed) - set(_RENAMED))
        if unknown:
            raise TypeError(f"build_learner() got unexpected keyword argument(s) {', '.join(unknown)}")
        for old, value in renamed.items():
            warnings.warn(f"build_learner({old}=...) is now {_RENAMED[old]}=...", DeprecationWarning, stacklevel=2)
        hidden = renamed.get("generator_hidden", hidden)
        rank = renamed.get("kml_rank", rank)
        factorization = renamed.get("kml_factorization", factorization)
        identity = renamed.get("kml_identity", identity)
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {LEARNERS}, got {learner!r}")
    if modulation not in MODULATIONS:
        raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
    r = recipe(learner)
    protocol = {"query_modulation": query_modulation, "prototype_refinement": prototype_refinement,
                "batch_norm": batch_norm}
    if learner == "maml":
        changed = [f"{k}={v!r}" for (k, v), default in zip(protocol.items(), (QUERY_MODULATIONS[0],
                   PROTOTYPE_REFINEMENTS[0], BATCH_NORMS[0])) if v != default]
        if changed:
            raise ValueError(f"{', '.join(changed)}: these protocol options are ProtoNet's; MAML has none")
    channels = tuple(r.channels if channels is None else channels)
    backbone = Conv4(
        in_channels,
        channels,
        style=r.style if style is None else style,
        bn_affine=r.bn_affine if bn_affine is None else bn_affine,
        bias=r.bias if bias is None else bias,
        pool=r.pool if pool is None else pool,
        num_classes=ways if learner == "maml" else None,
        image_size=image_size,
        modulation=modulation,
        task_dim=task_dim,
        hidden=tuple(hidden),
        rank=rank,
        factorization=factorization,
        identity=identity,
    )
    encoder = None
    if modulation != "none":
        encoder = TaskEncoder(in_channels, tuple(encoder_channels or channels), task_dim, image_size)
    if learner == "maml":
        return MAML(
            backbone,
            encoder,
            inner_steps=r.inner_steps if inner_steps is None else inner_steps,
            inner_lr=r.inner_lr if inner_lr is None else inner_lr,
            first_order=r.first_order if first_order is None else first_order,
            grad_clip=r.grad_clip if grad_clip is _UNSET else grad_clip,
            eval_inner_steps=eval_inner_steps,
        )
    return ProtoNet(backbone, encoder, **protocol)
