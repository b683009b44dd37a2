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
by :func:`method_name` like the built-ins (``docs/extending.md``). :func:`build_learner`
takes a learner's name and its own options, the modulation as a name or a
:class:`~kml.modulation_spec.ModulationSpec` and the backbone as a name or a
:class:`~kml.backbone_spec.BackboneSpec`:

    build_learner("protonet", "kml", ways=5, image_size=32)
    build_learner("protonet", ModulationSpec("kml", rank=2), backbone=BackboneSpec(channels=(64, 64, 64, 64)),
                  prototype_refinement="soft")
    build_learner("maml", "film", inner_steps=3)

kml 0.1's keywords that set the modulation (``task_dim``, ``hidden``, ``rank``,
``factorization``, ``identity``, ``init``, ``encoder_channels``, ``modulation_options``, and
``generator_hidden``, ``kml_rank``, ``kml_factorization``, ``kml_identity``) or the backbone
(``channels``, ``style``, ``bn_affine``, ``bias``, ``pool``) still work for this minor
version, with a ``DeprecationWarning`` that names the new call.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import kml.catalogue  # noqa: F401  (the built-in learners, backbones and modulations register)
from kml.backbone import get_backbone, modulation_spec
from kml.backbone_spec import BackboneSpec
from kml.learners.base import (
    LearnerOptions,
    LearnerOutput,
    MetaLearner,
    get_learner,
    list_learners,
    register_learner,
    upgrade_state_dict,
)
from kml.learners.maml import MAML, MAMLOptions
from kml.learners.protonet import (
    ProtoNet,
    ProtoNetOptions,
    prototypes,
    published_refined_prototypes,
    soft_refined_prototypes,
    squared_euclidean_logits,
)
from kml.modulation import get_modulation
from kml.modulation_spec import ModulationSpec
from kml.nets import TaskEncoder
from kml.recipes import RECIPES, Recipe, recipe

__all__ = [
    "LearnerOutput",
    "LearnerOptions",
    "MetaLearner",
    "MAML",
    "MAMLOptions",
    "ProtoNet",
    "ProtoNetOptions",
    "BackboneSpec",
    "ModulationSpec",
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
    modulation: str | ModulationSpec = "none",
    ways: int = 5,
    *,
    in_channels: int = 3,
    image_size: int = 84,
    backbone: str | BackboneSpec | None = None,
    **options: Any,
) -> MetaLearner:
    """Build any of the six methods with the paper's recipe (:mod:`kml.recipes`), or a
    registered learner, modulation and backbone of a user's own, as torchvision's
    ``get_model(name, **config)`` builds a model (examples in this module's docstring).

    Args:
        learner: ``"maml"``, ``"protonet"`` or a registered learner (:func:`list_learners`).
        modulation: ``"none"``, ``"film"``, ``"kml"`` or a registered modulation
            (:func:`kml.modulation.list_modulations`) with the default settings, or a
            :class:`~kml.modulation_spec.ModulationSpec` (task embedding size, KML's rank,
            factorisation, ``W * M``, init, the task encoder's widths, ...).
        ways: classes per task (the head of a learner with one, MAML's).
        in_channels: the images' channels. Default: 3.
        image_size: the images' height and width. Default: 84.
        backbone: ``"conv4"``, ``"resnet12"`` or a registered backbone
            (:func:`kml.backbone.list_backbones`), or a
            :class:`~kml.backbone_spec.BackboneSpec` (widths, style, BN affine, biases,
            pooling); ``None`` and every ``None`` setting: the learner's recipe's.
        **options: the learner's own options, fields of its ``Options``
            (:class:`MAMLOptions`: ``inner_steps``, ``inner_lr``, ...;
            :class:`ProtoNetOptions`: ``query_modulation``, ``prototype_refinement``,
            ``batch_norm``); missing ones take their defaults.

    kml 0.1's keywords of the modulation and the backbone (``task_dim=``, ``rank=``,
    ``channels=``, ...) still work for this minor version, with a ``DeprecationWarning``.

    Raises:
        kml.registry.UnknownNameError: an unregistered learner, modulation or backbone (a
            ``ValueError`` listing the registered names).
        kml.options.OptionError: an option the learner does not have (the message lists
            its options) or a value it refuses (a ``ValueError``, one line).
    """
    learner_class = get_learner(learner)
    spec, backbone_spec, options = _legacy_keywords(modulation, backbone, options)
    learner_options = learner_class.resolve_options(None, options)
    spec = modulation_spec(spec, {})
    b = backbone_spec.with_recipe(learner_class.recipe)
    net = get_backbone(b.name).from_options(
        in_channels=in_channels, channels=b.channels, style=b.style, bn_affine=b.bn_affine, bias=b.bias,
        pool=b.pool, num_classes=ways if learner_class.uses_head else None, image_size=image_size, modulation=spec,
    )
    encoder = None
    if spec.name != "none":
        encoder = TaskEncoder(in_channels, tuple(spec.encoder_channels or net.encoder_channels()), spec.task_dim,
                              image_size, init=spec.init)
    return learner_class.from_options(net, encoder, learner_options)


#: build_learner's keywords of kml 0.1 that set the modulation, by ModulationSpec field
_MODULATION_KEYWORDS = {"task_dim": "task_dim", "hidden": "hidden", "rank": "rank", "factorization": "factorization",
                        "identity": "identity", "init": "init", "encoder_channels": "encoder_channels",
                        "modulation_options": "options", "generator_hidden": "hidden", "kml_rank": "rank",
                        "kml_factorization": "factorization", "kml_identity": "identity"}
#: build_learner's keywords of kml 0.1 that set the backbone (BackboneSpec fields)
_BACKBONE_KEYWORDS = ("channels", "style", "bn_affine", "bias", "pool")


def _legacy_keywords(modulation: str | ModulationSpec, backbone: str | BackboneSpec | None,
                     options: Mapping[str, Any]) -> tuple[ModulationSpec, BackboneSpec, dict[str, Any]]:
    """The modulation and backbone specs, and the learner's options, from ``build_learner``'s
    arguments; kml 0.1's modulation and backbone keywords move into the specs, with a
    ``DeprecationWarning``.

    Raises:
        TypeError: a spec together with keywords of the same settings.
    """
    options = dict(options)
    moved = {key: options.pop(key) for key in list(options) if key in _MODULATION_KEYWORDS}
    built = {key: options.pop(key) for key in list(options) if key in _BACKBONE_KEYWORDS}
    if isinstance(modulation, ModulationSpec):
        if moved:
            raise TypeError(f"pass {', '.join(sorted(moved))} in the ModulationSpec, not as keywords")
        spec = modulation
    else:
        fields = {_MODULATION_KEYWORDS[k]: v for k, v in moved.items() if v is not None or k == "encoder_channels"}
        spec = ModulationSpec(name=modulation, **fields)
    if isinstance(backbone, BackboneSpec):
        if built:
            raise TypeError(f"pass {', '.join(sorted(built))} in the BackboneSpec, not as keywords")
        backbone_spec = backbone
    else:
        backbone_spec = BackboneSpec(name=backbone, **built)
    if moved or built:
        new = []
        if moved:
            new.append(f"ModulationSpec({modulation!r}, {', '.join(f'{_MODULATION_KEYWORDS[k]}=...' for k in moved)})")
        if built:
            new.append(f"backbone=BackboneSpec({', '.join(f'{k}=...' for k in built)})")
        warnings.warn(f"build_learner({', '.join(f'{k}=...' for k in (*moved, *built))}) is now "
                      f"build_learner(learner, {', '.join(new)}, ...)", DeprecationWarning, stacklevel=3)
    return spec, backbone_spec, options
