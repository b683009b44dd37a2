"""The backbone protocol, the backbone registry, and the modulatable convolution block
the built-in backbones are made of.

A backbone is an ``nn.Module`` deriving from :class:`Backbone`, registered by name with
:func:`register_backbone` (``conv4``: :class:`~kml.nets.Conv4`; ``resnet12``:
:class:`~kml.resnet.ResNet12`), and selected with ``learner.backbone.name``. What the
learners use of it:

- ``forward(x, modulation=None, params=None)``: ``x (T, B, C, H, W)`` (or one task
  ``(B, C, H, W)``) -> logits ``(T, B, num_classes)`` or features ``(T, B, feature_dim)``;
  ``modulation`` is what :meth:`Backbone.modulations` returned (``None``: unmodulated),
  ``params`` replaces adaptable parameters by name, each tensor possibly with a leading
  ``T`` dimension (MAML's per-task adapted weights);
- ``modulations(task_embedding (T, task_dim))``: the per-layer modulation of ``T`` tasks,
  one entry per modulated layer, in the order ``forward`` applies them;
- ``adaptable_parameters()`` / ``named_adaptable_parameters()``: what MAML's inner loop
  adapts and the backbone optimiser trains; ``generator_parameters()``: the parameters
  of the modulated layers' :class:`~kml.modulation.Generator` modules, trained by the
  modulation optimiser and never adapted (found by type, not by name);
- attributes ``modulation`` (the modulation's name), ``task_dim``, ``num_classes``,
  ``feature_dim``, ``channels``, ``image_size``.

The base class implements everything but ``__init__``/``forward`` from the modulated
layers it holds; a new backbone builds its convolutions with :class:`ConvBlock` (or the
registered modulations' ``from_spec``) and reads its parameters through attribute access,
so that ``torch.func.functional_call`` can swap them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch.nn as nn
from torch import Tensor

from kml.functional import (
    batch_norm_grouped,
    conv2d_grouped,
    flatten_grouped,
    global_avg_pool_grouped,
    linear_tasks,
    tasks_to_grouped,
)
from kml.modulation import ConvSite, Generator, ModulatedLayer, ModulationSpec, get_modulation
from kml.registry import BACKBONES, get_backbone, list_backbones

__all__ = [
    "Backbone",
    "ConvBlock",
    "modulation_spec",
    "register_backbone",
    "get_backbone",
    "list_backbones",
]

#: the task encoder's widths when the backbone does not set them (the encoder is a Conv-4)
ENCODER_CHANNELS = (32, 64, 128, 256)


def modulation_spec(modulation: str | ModulationSpec, options: Mapping[str, Any]) -> ModulationSpec:
    """A :class:`~kml.modulation_spec.ModulationSpec` from a spec or a modulation name and
    spec fields (``task_dim=6``, ...), checked by the modulation's layer class.

    Raises:
        TypeError: a spec together with fields, or an unknown field.
        kml.registry.UnknownNameError: an unregistered modulation.
        ValueError: settings the modulation refuses.
    """
    if isinstance(modulation, ModulationSpec):
        if options:
            raise TypeError(f"pass {', '.join(sorted(options))} in the ModulationSpec, not as keywords")
        spec = modulation
    else:
        spec = ModulationSpec(name=modulation, **options)
    layer = get_modulation(spec.name)
    if layer is not None:
        layer.check_spec(spec)
    return spec


class Backbone(nn.Module):
    """Base class of the backbones (the protocol of this module's docstring).

    Class attributes a backbone sets:
        default_channels: its widths when ``channels`` is ``None``.
        default_style, styles: its downsampling style when ``style`` is ``None``, and the
            styles it offers (``learner.backbone.style``).
        pools: its feature pooling choices (``learner.backbone.pool``).
    """

    default_channels: tuple[int, ...] = ()
    default_style: str | None = None
    styles: tuple[str, ...] = ()
    pools: tuple[str, ...] = ("avg", "flatten")
    #: the registered name (set by :func:`register_backbone`)
    backbone_name: str = ""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_options(
        cls,
        *,
        in_channels: int,
        channels: Sequence[int] | None,
        style: str | None,
        bn_affine: bool,
        bias: bool,
        pool: str,
        num_classes: int | None,
        image_size: int,
        modulation: ModulationSpec,
    ) -> "Backbone":
        """The backbone of :func:`kml.learners.build_learner` (``learner.backbone.*``);
        ``channels``/``style`` ``None``: the backbone's own. The default passes every
        option to the constructor by keyword."""
        return cls(in_channels=in_channels, channels=channels, style=style, bn_affine=bn_affine, bias=bias, pool=pool,
                   num_classes=num_classes, image_size=image_size, modulation=modulation)

    def resolve_options(
        self,
        channels: Sequence[int] | None,
        style: str | None,
        pool: str,
        modulation: str | ModulationSpec,
        modulation_options: Mapping[str, Any],
    ) -> tuple[ModulationSpec, Sequence[int], str]:
        """The modulation spec, widths and style a constructor builds with: ``None`` is the
        backbone's own default, and every option is checked (:meth:`check_options`)."""
        spec = modulation_spec(modulation, modulation_options)
        channels = self.default_channels if channels is None else channels
        style = self.default_style if style is None else style
        self.check_options(channels=channels, style=style, pool=pool, modulation=spec)
        return spec, channels, style

    def set_options(
        self,
        *,
        in_channels: int,
        channels: Sequence[int] | None,
        style: str | None,
        pool: str,
        image_size: int,
        modulation: str | ModulationSpec,
        modulation_options: Mapping[str, Any],
    ) -> ModulationSpec:
        """Resolve and check the options (:meth:`resolve_options`) and set the protocol's
        attributes: ``in_channels``, ``channels``, ``style``, ``pool``, ``image_size``,
        ``modulation_spec``, ``modulation`` (its name) and ``task_dim`` (``None`` when
        unmodulated). Returns the modulation spec."""
        spec, channels, style = self.resolve_options(channels, style, pool, modulation, modulation_options)
        self.in_channels = in_channels
        self.channels = tuple(int(c) for c in channels)
        self.style = style
        self.pool = pool
        self.image_size = image_size
        self.modulation_spec = spec
        self.modulation = spec.name
        self.task_dim = spec.task_dim if spec.name != "none" else None
        return spec

    def build_head(self, spatial: int, num_classes: int | None) -> None:
        """``feature_dim`` (``channels[-1]``, times ``spatial * spatial`` under
        ``pool="flatten"``) and ``head``: a linear layer to ``num_classes`` logits, or ``None``
        (the backbone returns features)."""
        self.feature_dim = self.channels[-1] * (1 if self.pool == "avg" else spatial * spatial)
        self.head = nn.Linear(self.feature_dim, num_classes) if num_classes else None
        self.num_classes = num_classes

    def reset_head(self) -> None:
        """Xavier-uniform head weight and zero head bias (no head: nothing)."""
        if self.head is not None:
            nn.init.xavier_uniform_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward_tasks(
        self,
        x: Tensor,
        params: Mapping[str, Tensor] | None,
        trunk: Callable[[Tensor, int, Mapping[str, Tensor]], Tensor],
    ) -> Tensor:
        """The frame of ``forward``: ``x (T, B, C, H, W)`` (or one task ``(B, C, H, W)``)
        goes to the grouped layout ``(B, T*C, H, W)``, through ``trunk(h, T, params)`` (the
        backbone's convolutions, grouped in and out), is pooled (``pool``) to ``(T, B, F)``
        and goes through the head (read from ``params`` when there)."""
        single = x.dim() == 4
        if single:
            x = x.unsqueeze(0)
        num_tasks = x.shape[0]
        params = params or {}
        h = trunk(tasks_to_grouped(x), num_tasks, params)
        features = global_avg_pool_grouped(h, num_tasks) if self.pool == "avg" else flatten_grouped(h, num_tasks)
        if self.head is not None:
            features = linear_tasks(features, params.get("head.weight", self.head.weight),
                                    params.get("head.bias", self.head.bias))
        return features[0] if single else features

    @classmethod
    def check_options(cls, *, channels: Sequence[int] | None, style: str | None, pool: str,
                      modulation: ModulationSpec) -> None:
        """Check the options before building (also run by the config validation).

        Raises:
            ValueError: one line naming the option, its value and the allowed values.
        """
        if style is not None and style not in cls.styles:
            raise ValueError(f"style must be one of {cls.styles}, got {style!r}")
        if pool not in cls.pools:
            raise ValueError(f"pool must be one of {cls.pools}, got {pool!r}")
        if channels is not None and (not len(channels) or any(int(c) < 1 for c in channels)):
            raise ValueError(f"channels must be a non-empty list of positive integers, got {list(channels)}")

    # ------------------------------------------------------------------ modulation
    def modulated_layers(self) -> list[ModulatedLayer]:
        """The modulated layers (their generators' owners), in the order ``forward``
        applies them; empty for a plain backbone. Default: module order."""
        return [m for m in self.modules() if isinstance(m, ModulatedLayer)]

    def modulations(self, task_embedding: Tensor) -> list | None:
        """Per-layer modulation of ``T`` tasks from ``task_embedding (T, task_dim)``
        (``None`` for a plain backbone)."""
        if self.modulation == "none":
            return None
        return [layer.modulation(task_embedding) for layer in self.modulated_layers()]

    # ------------------------------------------------------------------ parameters
    def _generator_ids(self) -> set[int]:
        return {id(p) for m in self.modules() if isinstance(m, Generator) for p in m.parameters()}

    def generator_parameters(self) -> list[nn.Parameter]:
        """The parameters of the modulated layers' generators (every
        :class:`~kml.modulation.Generator` submodule, whatever its attribute name)."""
        ids = self._generator_ids()
        return [p for p in self.parameters() if id(p) in ids]

    def named_adaptable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Every other parameter by name (conv, BN, head): what MAML's inner loop adapts."""
        ids = self._generator_ids()
        return ((n, p) for n, p in self.named_parameters() if id(p) not in ids)

    def adaptable_parameters(self) -> list[nn.Parameter]:
        """The parameters of :meth:`named_adaptable_parameters`."""
        return [p for _, p in self.named_adaptable_parameters()]

    # ------------------------------------------------------------------ task encoder, memory
    def encoder_channels(self) -> tuple[int, ...]:
        """The widths of the task encoder (a Conv-4) when ``modulation.encoder_channels`` is
        not set. Default: Conv-4's own 32-64-128-256."""
        return ENCODER_CHANNELS

    def activation_floats(self, image_size: int) -> int:
        """Floats of the activations of one image through the backbone (the transference
        analysis sizes its chunks with it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement activation_floats(image_size)")

    def forward(self, x: Tensor, modulation: Sequence | None = None, params: Mapping[str, Tensor] | None = None):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, modulation=None, params=None)")




def register_backbone(name: str):
    """Class decorator: register a :class:`Backbone` subclass under ``name``
    (``learner.backbone.name=<name>``, ``build_learner(..., backbone=<name>)``)."""

    def prepare(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Backbone)):
            raise TypeError(f"register_backbone({name!r}): {cls!r} must subclass kml.backbone.Backbone")
        cls.backbone_name = name

    return BACKBONES.decorator(name, prepare)




def _renamed_features_keys(state_dict, prefix, *args, name: str) -> None:
    """A load-state-dict pre-hook (bound to ``name`` with :func:`functools.partial`, so that
    the module still pickles): keys of a checkpoint that stored a feature modulation under
    its registered name (``blocks.0.<name>.``, kml 0.1) load into ``blocks.0.features.``."""
    rename_feature_keys(state_dict, prefix, name)


def rename_feature_keys(state_dict: dict, prefix: str, name: str) -> None:
    """In place: the keys ``<prefix><name>.*`` of a state dict become ``<prefix>features.*``
    (a user feature modulation stored under its registered name, kml 0.1)."""
    old = f"{prefix}{name}."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[f"{prefix}features.{key[len(old):]}"] = state_dict.pop(key)


class ConvBlock(nn.Module):
    """One modulatable convolution of a backbone: ``conv (k x k) -> BatchNorm (batch
    statistics per task) -> [feature modulation]``; activation and pooling are the
    backbone's.

    ``conv`` is an ``nn.Conv2d`` or, with a kernel modulation, the modulation's
    :class:`~kml.modulation.ModulatedConv2d` (KML: :class:`~kml.modulation.KernelModulatedConv2d`);
    ``bn`` holds the optional BN affine parameters (``None`` without); a feature
    modulation's layer sits under its modulation's name (FiLM: ``film``, ``None`` otherwise).

    Args:
        in_channels: the convolution's input channels.
        out_channels: its output channels.
        stride: its stride (``kernel_size`` and ``padding`` are keyword-only, default 3
            and 1).
        bn_affine: learnable BN scale and shift.
        modulation: a :class:`~kml.modulation_spec.ModulationSpec`, or a modulation name
            with the spec's fields as keywords (``task_dim=6``, ...).
        bias: the conv bias (and a kernel modulation's bias shift).
        first_layer: whether the convolution reads the images.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        bn_affine: bool,
        modulation: str | ModulationSpec = "none",
        bias: bool = True,
        *,
        first_layer: bool = False,
        kernel_size: int = 3,
        padding: int = 1,
        **spec_fields: Any,
    ) -> None:
        super().__init__()
        spec = modulation_spec(modulation, spec_fields)
        layer_class = get_modulation(spec.name)
        site = ConvSite(in_channels, out_channels, kernel_size, stride, padding, bias, first_layer)
        self.stride = stride
        self.padding = padding
        self.target = layer_class.target if layer_class is not None else ""
        self._modulated_name = ""
        self.film = None
        if self.target == "kernel":
            self.conv = self._built(layer_class, site, spec)
            self._modulated_name = "conv"
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, affine=True, track_running_stats=False) if bn_affine else None
        if self.target == "features":
            # FiLM keeps its attribute (and its checkpoint keys); any other feature modulation is
            # ``features``, so that its keys do not depend on the name it is registered under
            self._modulated_name = "film" if spec.name == "film" else "features"
            setattr(self, self._modulated_name, self._built(layer_class, site, spec))
            if self._modulated_name == "features":
                #: the name the feature modulation is registered under (its kml 0.1 attribute)
                self.feature_modulation = spec.name
                self._register_load_state_dict_pre_hook(functools.partial(_renamed_features_keys, name=spec.name))

    @staticmethod
    def _built(layer_class: type[ModulatedLayer], site: ConvSite, spec: ModulationSpec) -> ModulatedLayer:
        layer = layer_class.from_spec(site, spec)
        if not any(isinstance(m, Generator) for m in layer.modules()):
            raise TypeError(
                f"{type(layer).__name__} (modulation {spec.name!r}) holds no kml.modulation.Generator: make its "
                "generator a Generator subclass, so that MAML does not adapt it in the inner loop"
            )
        return layer

    @property
    def modulated(self) -> ModulatedLayer | None:
        """The block's modulated layer (its generator's owner), or ``None``."""
        return getattr(self, self._modulated_name) if self._modulated_name else None

    def forward_grouped(
        self,
        x: Tensor,
        num_tasks: int,
        modulation: Any = None,
        params: Mapping[str, Tensor] | None = None,
        prefix: str = "",
    ) -> Tensor:
        """``(B, T*C_in, H, W)`` (grouped layout, :mod:`kml.functional`) -> ``(B, T*C_out, H', W')``.

        Args:
            modulation: the tasks' modulation of this block's modulated layer (``None``:
                unmodulated).
            params: replacements of this block's parameters by their backbone names
                (``prefix + "conv.weight"``, ...), possibly with a leading ``T`` dimension.
        """
        params = params or {}
        weight = params.get(prefix + "conv.weight", self.conv.weight)
        bias = params.get(prefix + "conv.bias", self.conv.bias)
        if self.target == "kernel":
            h = self.conv.forward_grouped(x, num_tasks, modulation, weight, bias)
        else:
            h = conv2d_grouped(x, weight, bias, num_tasks, stride=self.stride, padding=self.padding)
        if self.bn is not None:
            h = batch_norm_grouped(
                h,
                num_tasks,
                params.get(prefix + "bn.weight", self.bn.weight),
                params.get(prefix + "bn.bias", self.bn.bias),
            )
        else:
            h = batch_norm_grouped(h, num_tasks)
        if self.target == "features":
            h = self.modulated.forward_grouped(h, modulation)
        return h
