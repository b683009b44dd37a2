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

from typing import Sequence

from kml.learners.base import LearnerOutput, MetaLearner
from kml.learners.maml import MAML
from kml.learners.protonet import ProtoNet, prototypes, squared_euclidean_logits
from kml.nets import MODULATIONS, Conv4, Modulator, TaskEncoder

__all__ = [
    "LearnerOutput",
    "MetaLearner",
    "MAML",
    "ProtoNet",
    "prototypes",
    "squared_euclidean_logits",
    "build_learner",
    "method_name",
    "LEARNERS",
]

LEARNERS = ("maml", "protonet")

_METHOD_NAMES = {
    ("maml", "none"): "MAML",
    ("maml", "film"): "MMAML",
    ("maml", "kml"): "MMAML+KML",
    ("protonet", "none"): "ProtoNet",
    ("protonet", "film"): "MProtoNet",
    ("protonet", "kml"): "MProtoNet+KML",
}


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
    in_channels: int = 3,
    image_size: int = 84,
    channels: Sequence[int] = (32, 64, 128, 256),
    style: str = "strided",
    bn_affine: bool = False,
    pool: str = "avg",
    task_dim: int = 128,
    encoder_channels: Sequence[int] | None = None,
    generator_hidden: Sequence[int] = (),
    kml_rank: int = 1,
    kml_factorization: str = "channel",
    kml_identity: bool = True,
    inner_steps: int = 5,
    inner_lr: float = 0.05,
    first_order: bool = False,
    grad_clip: float | None = 20.0,
    eval_inner_steps: int | None = None,
) -> MetaLearner:
    """Build any of the six methods from plain arguments.

    ``learner`` is ``"maml"`` or ``"protonet"``; ``modulation`` is ``"none"``,
    ``"film"`` or ``"kml"``. Backbone options go to :class:`~kml.nets.Conv4`, the
    encoder is a strided Conv-4 with ``encoder_channels`` (default: ``channels``)
    producing a ``task_dim`` embedding, and the ``kml_*`` options to
    :class:`~kml.modulation.KernelGenerator`. MAML options are ignored by ProtoNet.
    """
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {LEARNERS}, got {learner!r}")
    if modulation not in MODULATIONS:
        raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
    backbone = Conv4(
        in_channels,
        channels,
        style=style,
        bn_affine=bn_affine,
        pool=pool,
        num_classes=ways if learner == "maml" else None,
        image_size=image_size,
    )
    encoder = modulator = None
    if modulation != "none":
        encoder = TaskEncoder(in_channels, encoder_channels or channels, task_dim, image_size)
        modulator = Modulator(
            backbone.layer_shapes(),
            modulation,
            task_dim=task_dim,
            hidden=generator_hidden,
            rank=kml_rank,
            factorization=kml_factorization,
            identity=kml_identity,
        )
    if learner == "maml":
        return MAML(
            backbone,
            encoder,
            modulator,
            inner_steps=inner_steps,
            inner_lr=inner_lr,
            first_order=first_order,
            grad_clip=grad_clip,
            eval_inner_steps=eval_inner_steps,
        )
    return ProtoNet(backbone, encoder, modulator)
