"""Networks: the Conv-4 backbone (plain, FiLM- or kernel-modulated) and the task encoder.

All networks take a batch of ``T`` tasks, ``x (T, B, C, H, W)``, and run them
in one computation (see :mod:`kml.functional`). :class:`Conv4` reads its
parameters through attribute access, so ``torch.func.functional_call`` can swap
them, and also takes an explicit ``params`` dict whose tensors may carry a
leading task dimension (MAML's per-task adapted weights).

A modulated Conv-4 is built from the layers users import: its convolutions are
:class:`~kml.modulation.KernelModulatedConv2d` (KML) and its FiLM layers
:class:`~kml.modulation.FiLM` (MMAML), each owning its generator; any other registered
modulation is built the same way (:class:`~kml.backbone.ConvBlock`). :class:`Conv4`
follows the backbone protocol of :mod:`kml.backbone` and is registered as ``conv4``.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from kml.backbone import Backbone, ConvBlock, register_backbone
from kml.functional import (
    TaskLinear,
)
from kml.modulation import FeatureModulation, KernelModulation, ModulationSpec, list_modulations
from kml.modulation_spec import INITS

# MODULATIONS: module __getattr__, read from the registry
__all__ = ["Conv4", "ConvBlock", "TaskEncoder", "LayerModulation", "MODULATIONS", "STYLES", "POOLS"]  # noqa: F822

#: the per-layer modulation of the built-in modulations (a registered one returns its own)
LayerModulation = Union[KernelModulation, FeatureModulation, None]
STYLES = ("strided", "maxpool")
POOLS = ("avg", "flatten")
WEIGHT_INITS = ("xavier", "torch")


def __getattr__(name: str) -> Any:
    if name == "MODULATIONS":  # the registered modulation names, at the time of access
        return list_modulations()
    raise AttributeError(f"module 'kml.nets' has no attribute {name!r}")


def _spatial_size(image_size: int, style: str, depth: int) -> int:
    size = image_size
    for _ in range(depth):
        size = (size - 1) // 2 + 1 if style == "strided" else size // 2
    return size


@register_backbone("conv4")
class Conv4(Backbone):
    """Conv-4 backbone, vectorised over tasks, optionally modulated by a task embedding.

    Block ``l``: ``conv3x3 -> BatchNorm (batch statistics per task) -> [FiLM] -> ReLU
    [-> max-pool 2x2]``; with kernel modulation the conv is a
    :class:`~kml.modulation.KernelModulatedConv2d` (``W * (1 + M(v))``, ``b + db(v)``),
    with FiLM each block has a :class:`~kml.modulation.FiLM` after its BatchNorm
    (:class:`~kml.backbone.ConvBlock`).

    Args:
        in_channels: image channels.
        channels: output channels of the blocks; ``None`` (default): ``(32, 64, 128, 256)``,
            MMAML/KML's network; ``(32,)*4`` or ``(64,)*4`` is the classic MAML one.
        style: ``"strided"`` (default; 3x3 stride-2 conv, MMAML/KML; 84 -> 42 -> 21 -> 11 -> 6)
            or ``"maxpool"`` (3x3 stride-1 conv then 2x2 max-pool, classic MAML).
        bn_affine: learnable BN scale/shift (MMAML's backbone has none).
        bias: conv biases (and, with KML, the bias shift ``db(v) = g3(v)``). Every conv is
            followed by batch-statistics BatchNorm, which cancels a per-channel constant
            exactly, so they do not change any output; ``True`` (default) keeps the
            parameters of the paper's formula and the published code, ``False`` drops them
            (docs/modulation.md: the same predictions, a few percent faster).
        pool: ``"avg"`` (global average pool -> ``channels[-1]`` features) or
            ``"flatten"`` (``channels[-1] * s * s`` features).
        num_classes: size of the linear head (MAML); ``None`` returns features (ProtoNet).
        image_size: input height/width (needed for ``pool="flatten"``).
        weight_init: ``"xavier"`` (default; MMAML's Xavier-uniform conv and head weights, zero
            biases) or ``"torch"`` (PyTorch's default init of ``nn.Conv2d`` and ``nn.Linear``,
            as each layer is built: the published KML code's task encoder).
        modulation: a registered modulation (``"none"``, ``"film"``, ``"kml"``, ...) or a
            :class:`~kml.modulation_spec.ModulationSpec`.
        **modulation_options: the spec's fields with a modulation name: ``task_dim``,
            ``hidden``, ``rank``, ``factorization`` (``"published"`` gives the first block
            channel-aligned factors and later blocks ``(3*C_out, 3*C_in)``), ``identity``,
            ``options`` (defaults: :class:`~kml.modulation_spec.ModulationSpec`).

    Shapes: ``forward(x (T, B, C, H, W))`` -> ``(T, B, num_classes)`` logits or
    ``(T, B, feature_dim)`` features. A 4-d ``x (B, C, H, W)`` is one task.

    The generators are part of the backbone module but not of its *adaptable*
    parameters (:meth:`named_adaptable_parameters`): MAML's inner loop and the
    backbone optimiser see the conv, BN and head parameters only.
    """

    default_channels = (32, 64, 128, 256)
    default_style = "strided"
    styles = STYLES
    pools = POOLS

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] | None = None,
        style: str | None = None,
        bn_affine: bool = False,
        pool: str = "avg",
        num_classes: int | None = None,
        image_size: int = 84,
        modulation: str | ModulationSpec = "none",
        bias: bool = True,
        weight_init: str = "xavier",
        **modulation_options: Any,
    ) -> None:
        super().__init__()
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
        spec = self.set_options(in_channels=in_channels, channels=channels, style=style, pool=pool,
                                image_size=image_size, modulation=modulation, modulation_options=modulation_options)
        self.stride = 2 if self.style == "strided" else 1
        widths = (in_channels,) + self.channels
        self.blocks = nn.ModuleList(
            ConvBlock(
                widths[i], widths[i + 1], self.stride, bn_affine, modulation=spec, bias=bias, first_layer=(i == 0)
            )
            for i in range(len(self.channels))
        )
        spatial = _spatial_size(image_size, self.style, len(self.channels))
        if spatial < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(self.channels)} blocks")
        self.build_head(spatial, num_classes)
        if weight_init == "xavier":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform conv and head weights, zero biases (MMAML); generators keep
        their identity initialisation."""
        for block in self.blocks:
            nn.init.xavier_uniform_(block.conv.weight)
            if block.conv.bias is not None:
                nn.init.zeros_(block.conv.bias)
        self.reset_head()

    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(in_channels, out_channels)`` of each block."""
        widths = (self.in_channels,) + self.channels
        return [(widths[i], widths[i + 1]) for i in range(len(self.channels))]

    def modulated_layers(self) -> list[nn.Module]:
        """The modulated layer (:class:`~kml.modulation.KernelModulatedConv2d`,
        :class:`~kml.modulation.FiLM`, ...) of each block (empty for a plain backbone)."""
        return [block.modulated for block in self.blocks if block.modulated is not None]

    def encoder_channels(self) -> tuple[int, ...]:
        """The task encoder's default widths: this Conv-4's own."""
        return self.channels

    def activation_floats(self, image_size: int) -> int:
        """Floats of the conv activations of one image."""
        size, total = image_size, 0
        for channels in self.channels:
            if self.style == "strided":
                size = (size - 1) // 2 + 1
                total += channels * size * size
            else:  # conv at full resolution, then 2x2 max-pool
                total += channels * size * size
                size = max(size // 2, 1)
        return total

    def forward(
        self,
        x: Tensor,
        modulation: Sequence[Any] | None = None,
        params: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Run ``T`` tasks.

        Args:
            x: ``(T, B, C, H, W)`` (or ``(B, C, H, W)`` for one task).
            modulation: one modulation per block (:class:`KernelModulation`,
                :class:`FeatureModulation`, ...), each holding ``T`` tasks
                (:meth:`modulations`); ``None``: unmodulated (the identity modulation).
            params: optional replacements for adaptable parameters by name
                (``"blocks.0.conv.weight"``, ``"head.weight"``, ...); a tensor may have a
                leading ``T`` dimension.
        """

        def trunk(h: Tensor, num_tasks: int, params: dict[str, Tensor]) -> Tensor:
            for i, block in enumerate(self.blocks):
                mod = modulation[i] if modulation is not None else None
                h = F.relu(block.forward_grouped(h, num_tasks, mod, params, f"blocks.{i}."))
                if self.style == "maxpool":
                    h = F.max_pool2d(h, 2)
            return h

        return self.forward_tasks(x, params, trunk)


class TaskEncoder(nn.Module):
    """Task encoder ``h_phi``: support images -> task embedding ``v``.

    A strided Conv-4 trunk with affine BN (batch statistics per task), global
    average pooling, ``Linear(channels[-1], task_dim) + ReLU`` per image, then the
    mean over the support images (labels are not used).

    ``init="default"`` gives the trunk MMAML's Xavier-uniform weights; ``"published"`` keeps
    PyTorch's default init of every convolution and of the projection, as the published KML
    code does (``modulation.init``). The projection has PyTorch's default init either way.

    Shapes: ``support (T, N*K, C, H, W)`` -> ``(T, task_dim)``; a 4-d support set
    (one task) gives ``(task_dim,)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256),
        task_dim: int = 128,
        image_size: int = 84,
        init: str = "default",
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.task_dim = task_dim
        self.trunk = Conv4(in_channels, channels, style="strided", bn_affine=True, pool="avg", image_size=image_size,
                           weight_init="torch" if init == "published" else "xavier")
        self.project = TaskLinear(self.trunk.feature_dim, task_dim)

    def forward(self, support: Tensor) -> Tensor:
        single = support.dim() == 4
        if single:
            support = support.unsqueeze(0)
        per_image = F.relu(self.project(self.trunk(support)))  # (T, N*K, task_dim)
        embedding = per_image.mean(dim=1)
        return embedding[0] if single else embedding
