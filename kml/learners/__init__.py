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

Learners, modulations and backbones are registries (:func:`register_learner`,
:func:`kml.modulation.register_modulation`, :func:`kml.backbone.register_backbone`):
a class registered in a user's own module is built by :func:`build_learner` and named
by :func:`method_name` like the built-ins (``docs/extending.md``).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import kml.catalogue  # noqa: F401  (the built-in learners, backbones and modulations register)
from kml.backbone import get_backbone, modulation_spec
from kml.learners.base import (
    LearnerOutput,
    MetaLearner,
    get_learner,
    list_learners,
    register_learner,
    upgrade_state_dict,
)
from kml.learners.maml import MAML
from kml.learners.protonet import (
    ProtoNet,
    prototypes,
    published_refined_prototypes,
    soft_refined_prototypes,
    squared_euclidean_logits,
)
from kml.modulation import get_modulation
from kml.nets import TaskEncoder
from kml.recipes import (
    BATCH_NORMS,
    MODULATION_DEFAULTS,
    PROTOTYPE_REFINEMENTS,
    QUERY_MODULATIONS,
    RECIPES,
    Recipe,
    recipe,
)

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
    "register_learner",
    "get_learner",
    "list_learners",
    "LEARNERS",
    "RECIPES",
    "Recipe",
    "recipe",
]


def __getattr__(name: str) -> Any:
    if name == "LEARNERS":  # the registered learner names, at the time of access
        return list_learners()
    raise AttributeError(f"module 'kml.learners' has no attribute {name!r}")


# names build_learner took in kml 0.1
_RENAMED = {"generator_hidden": "hidden", "kml_rank": "rank", "kml_factorization": "factorization",
            "kml_identity": "identity"}
_UNSET = object()


def method_name(learner: str, modulation: str, multi: bool = False) -> str:
    """The paper's name of a method, e.g. ``("maml", "kml") -> "MMAML+KML"``;
    ``multi=True`` gives the per-mode specialists ``Multi-MAML`` / ``Multi-ProtoNet``.

    A modulated method is ``"M"`` + the learner's ``display_name`` + the modulation's
    ``method_suffix`` (FiLM: none, KML: ``"+KML"``), for registered ones too.

    Raises:
        kml.registry.UnknownNameError: an unregistered learner or modulation.
    """
    base = get_learner(learner).display_name
    layer = get_modulation(modulation)
    if multi:
        return "Multi-" + base + ("" if layer is None else f"({modulation})")
    return base if layer is None else "M" + base + layer.method_suffix


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
    init: str = MODULATION_DEFAULTS.init,
    inner_steps: int | None = None,
    inner_lr: float | None = None,
    first_order: bool | None = None,
    grad_clip: float | None | object = _UNSET,
    eval_inner_steps: int | None = None,
    query_modulation: str = QUERY_MODULATIONS[0],
    prototype_refinement: str = PROTOTYPE_REFINEMENTS[0],
    batch_norm: str = BATCH_NORMS[0],
    backbone: str | None = None,
    modulation_options: Mapping[str, Any] | None = None,
    **renamed,
) -> MetaLearner:
    """Build any of the six methods with the paper's recipe (:mod:`kml.recipes`), or a
    registered learner, modulation and backbone of a user's own.

    Args:
        learner: ``"maml"``, ``"protonet"`` or a registered learner (:func:`list_learners`).
        modulation: ``"none"``, ``"film"``, ``"kml"`` or a registered modulation
            (:func:`kml.modulation.list_modulations`).
        ways: classes per task (MAML's head).
        in_channels: the images' channels. Default: 3.
        image_size: the images' height and width. Default: 84.
        channels: the backbone's widths. Default: the backbone's own (Conv-4's
            32-64-128-256).
        style: the backbone's style (Conv-4: ``"strided"`` or ``"maxpool"``). Default:
            the backbone's own.
        bn_affine: learnable BN scale and shift. Default: the learner's recipe (MAML: no;
            ProtoNet: yes), the same values as ``learner=maml|protonet`` on the command line.
        pool: ``"avg"`` or ``"flatten"`` features. Default: the recipe's (MAML: average
            pool; ProtoNet: flattened features).
        bias: conv biases. Default: the recipe's (kept).
        backbone: ``"conv4"``, ``"resnet12"`` or a registered backbone
            (:func:`kml.backbone.list_backbones`). Default: the recipe's, ``"conv4"``.
        task_dim: the task embedding's size. Default: 128.
        encoder_channels: the widths of the task encoder, a strided Conv-4. Default: a
            Conv-4 backbone's ``channels``; Conv-4's 32-64-128-256 for other backbones.
        hidden: hidden sizes of the generator MLPs (:class:`~kml.modulation.KernelGenerator`,
            as ``modulation.hidden``). Default: ``()``.
        rank: KML's rank (``modulation.rank``). Default: 1.
        factorization: KML's factorization (``modulation.factorization``). Default:
            ``"channel"``.
        identity: ``W * (1 + M)`` or ``W * M`` (``modulation.identity``). Default: ``True``.
        init: how the generators and the task encoder start (``modulation.init``):
            ``"default"`` or ``"published"`` (:class:`~kml.modulation_spec.ModulationSpec`).
        modulation_options: a registered modulation's own settings (``modulation.options``),
            checked by its layer class.
        inner_steps: MAML's inner steps (default: the recipe's); ignored by ProtoNet.
        inner_lr: MAML's inner learning rate (default: the recipe's).
        first_order: first-order MAML (default: the recipe's, second order).
        grad_clip: MAML's inner gradient clamp (default: the recipe's, 20).
        eval_inner_steps: MAML's inner steps in eval mode (default: ``inner_steps``).
        query_modulation: ProtoNet's ``"support"`` (the paper) or ``"query"`` (see
            :class:`~kml.learners.ProtoNet`). A learner without the protocol options (MAML)
            accepts only the defaults, which are the paper's text.
        prototype_refinement: ProtoNet's ``"none"``, ``"soft"`` or ``"published"``.
        batch_norm: ProtoNet's ``"separate"`` or ``"joint"`` batch statistics.

    The names ``generator_hidden``, ``kml_rank``, ``kml_factorization`` and
    ``kml_identity`` of kml 0.1 are still accepted, with a ``DeprecationWarning``.

    Raises:
        kml.registry.UnknownNameError: an unregistered learner, modulation or backbone (a
            ``ValueError`` listing the registered names).
    """
    if renamed:
        unknown = sorted(set(renamed) - set(_RENAMED))
        if unknown:
            raise TypeError(f"build_learner() got unexpected keyword argument(s) {', '.join(unknown)}")
        for old in renamed:
            warnings.warn(f"build_learner({old}=...) is now {_RENAMED[old]}=...", DeprecationWarning, stacklevel=2)
        hidden = renamed.get("generator_hidden", hidden)
        rank = renamed.get("kml_rank", rank)
        factorization = renamed.get("kml_factorization", factorization)
        identity = renamed.get("kml_identity", identity)
    learner_class = get_learner(learner)
    r = learner_class.recipe
    spec = modulation_spec(modulation, dict(task_dim=task_dim, hidden=tuple(hidden), rank=rank,
                                            factorization=factorization, identity=identity, init=init,
                                            options=dict(modulation_options or {})))
    protocol = {"query_modulation": query_modulation, "prototype_refinement": prototype_refinement,
                "batch_norm": batch_norm}
    defaults = {"query_modulation": QUERY_MODULATIONS[0], "prototype_refinement": PROTOTYPE_REFINEMENTS[0],
                "batch_norm": BATCH_NORMS[0]}
    changed = [f"{k}={v!r}" for k, v in protocol.items()
               if v != defaults[k] and k not in learner_class.protocol_options]
    if changed:
        raise ValueError(
            f"{', '.join(changed)}: these protocol options are ProtoNet's; {learner_class.display_name} has none"
        )
    backbone_class = get_backbone(r.backbone if backbone is None else backbone)
    net = backbone_class.from_options(
        in_channels=in_channels,
        channels=r.channels if channels is None else tuple(channels),
        style=r.style if style is None else style,
        bn_affine=r.bn_affine if bn_affine is None else bn_affine,
        bias=r.bias if bias is None else bias,
        pool=r.pool if pool is None else pool,
        num_classes=ways if learner_class.uses_head else None,
        image_size=image_size,
        modulation=spec,
    )
    encoder = None
    if spec.name != "none":
        encoder = TaskEncoder(in_channels, tuple(encoder_channels or net.encoder_channels()), task_dim, image_size,
                              init=spec.init)
    options = {
        "inner_steps": r.inner_steps if inner_steps is None else inner_steps,
        "inner_lr": r.inner_lr if inner_lr is None else inner_lr,
        "first_order": r.first_order if first_order is None else first_order,
        "grad_clip": r.grad_clip if grad_clip is _UNSET else grad_clip,
        "eval_inner_steps": eval_inner_steps,
        **protocol,
    }
    return learner_class.from_options(net, encoder, options)
