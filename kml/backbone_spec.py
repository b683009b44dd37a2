"""The settings a backbone is built with (``learner.backbone.*``), in one object.

A :class:`BackboneSpec` carries them from the config (or :func:`kml.learners.build_learner`)
to the registered backbone class (:meth:`kml.backbone.Backbone.from_options`). ``None``
means "the learner's recipe's" (:mod:`kml.recipes`: ``bn_affine``, ``bias``, ``pool``,
the backbone's name) or "the backbone's own" (``style``, ``channels``). Each registered
backbone checks the values it does not offer (:meth:`kml.backbone.Backbone.check_options`).
Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional

from kml.options import option, options_from

__all__ = ["BackboneSpec"]


@dataclass(frozen=True)
class BackboneSpec:
    """The declaration of the ``learner.backbone.*`` settings (type, default, doc)."""

    name: Optional[str] = option(None, "conv4 | resnet12 | a registered backbone; null: the learner's recipe's")
    style: Optional[str] = option(None, "the downsampling: Conv-4 strided (MMAML/KML) | maxpool (classic MAML); "
                                        "null: the backbone's own")
    channels: Optional[tuple[int, ...]] = option(None, "the blocks' widths; null: the backbone's own (Conv-4 "
                                                       "32-64-128-256, ResNet-12 64-160-320-640)")
    bn_affine: Optional[bool] = option(None, "learnable BN scale and shift; null: the recipe's (MAML no, ProtoNet "
                                             "yes)")
    bias: Optional[bool] = option(None, "conv biases and KML's db(v), cancelled exactly by the batch-statistics BN "
                                        "after each conv; null: the recipe's (kept)")
    pool: Optional[str] = option(None, "avg (global average pool) | flatten; null: the recipe's (MAML avg, "
                                       "ProtoNet flatten)")

    def __post_init__(self) -> None:
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
            if not self.channels or any(c < 1 for c in self.channels):
                raise ValueError(f"channels={list(self.channels)} is out of range: it must be a non-empty list of "
                                 "positive integers")

    def with_recipe(self, recipe: Any) -> "BackboneSpec":
        """The spec with the ``None`` settings a :class:`~kml.recipes.Recipe` gives filled in
        (``style`` and ``channels`` stay ``None`` where the recipe leaves them to the backbone)."""
        pick = {name: getattr(recipe, name) for name in ("style", "channels", "bn_affine", "bias", "pool")}
        pick["name"] = recipe.backbone
        return replace(self, **{k: v for k, v in pick.items() if getattr(self, k) is None})

    @classmethod
    def from_config(cls, backbone: Any) -> "BackboneSpec":
        """The spec of a run config's ``learner.backbone`` section (a ``DictConfig`` or a mapping).

        Raises:
            kml.options.OptionError: an unknown setting or a value of the wrong type, in one
                line naming ``learner.backbone.<setting>``.
        """
        if not isinstance(backbone, Mapping):
            from omegaconf import OmegaConf

            backbone = OmegaConf.to_container(backbone, resolve=True)
        return options_from(cls, backbone, "learner.backbone", "the backbone")
