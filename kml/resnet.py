"""ResNet-12: the deeper backbone of TADAM, MetaOptNet and FEAT, vectorised over tasks,
with every 3x3 convolution modulatable (``learner.backbone.name=resnet12``).

Four residual blocks of widths 64-160-320-640 (configurable); each block is three 3x3
convolutions, each followed by batch normalisation (batch statistics per task), with
leaky ReLUs (slope 0.1) between them, a 1x1 convolution with batch normalisation on the
shortcut, a leaky ReLU after the sum and a 2x2 max-pool (84 -> 42 -> 21 -> 10 -> 5).
With a modulation every 3x3 convolution is modulated (KML: its kernel; FiLM: after its
batch normalisation); the 1x1 shortcuts are not. Of KML's factorisations only the
channel-aligned one is offered: the published factor sizes are defined for Conv-4 only,
and a full generator would need over a billion parameters at width 640.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from kml.backbone import Backbone, ConvBlock, register_backbone
from kml.modulation import KernelModulatedConv2d, ModulatedLayer, ModulationSpec, get_modulation

__all__ = ["ResNet12", "ResidualBlock"]

#: the negative slope of the leaky ReLUs (as in TADAM, MetaOptNet and FEAT)
LEAKY_SLOPE = 0.1


class ResidualBlock(nn.Module):
    """``x -> [conv3x3-BN-(mod)-lrelu] x2 -> conv3x3-BN-(mod)``, plus ``conv1x1-BN(x)``, then
    leaky ReLU and a 2x2 max-pool. ``conv1``, ``conv2``, ``conv3`` and ``shortcut`` are
    :class:`~kml.backbone.ConvBlock` s; the three 3x3 ones carry the modulation.

    Args:
        in_channels: the block's input width.
        out_channels: its output width.
        bn_affine: learnable BN scale and shift.
        modulation: the :class:`~kml.modulation_spec.ModulationSpec` of the 3x3 convolutions.
        bias: conv biases (inert under the batch-statistics BN, as in Conv-4).
        first_layer: whether ``conv1`` reads the images.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bn_affine: bool,
        modulation: ModulationSpec,
        bias: bool = True,
        first_layer: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = ConvBlock(in_channels, out_channels, 1, bn_affine, modulation, bias, first_layer=first_layer)
        self.conv2 = ConvBlock(out_channels, out_channels, 1, bn_affine, modulation, bias)
        self.conv3 = ConvBlock(out_channels, out_channels, 1, bn_affine, modulation, bias)
        self.shortcut = ConvBlock(in_channels, out_channels, 1, bn_affine, "none", bias, kernel_size=1, padding=0)

    def units(self) -> tuple[ConvBlock, ConvBlock, ConvBlock]:
        """The three modulatable 3x3 convolutions, in the order they run."""
        return self.conv1, self.conv2, self.conv3

    def forward_grouped(self, x: Tensor, num_tasks: int, modulation: Sequence[Any] | None,
                        params: dict[str, Tensor], prefix: str) -> Tensor:
        """``(B, T*C_in, H, W)`` -> ``(B, T*C_out, H/2, W/2)``; ``modulation``: one entry per
        3x3 convolution (or ``None``)."""
        h = x
        for j, (name, unit) in enumerate(zip(("conv1", "conv2", "conv3"), self.units())):
            mod = modulation[j] if modulation is not None else None
            h = unit.forward_grouped(h, num_tasks, mod, params, f"{prefix}{name}.")
            if j < 2:
                h = F.leaky_relu(h, LEAKY_SLOPE)
        h = h + self.shortcut.forward_grouped(x, num_tasks, None, params, f"{prefix}shortcut.")
        return F.max_pool2d(F.leaky_relu(h, LEAKY_SLOPE), 2)


@register_backbone("resnet12")
class ResNet12(Backbone):
    """ResNet-12 vectorised over tasks, optionally modulated by a task embedding.

    Args:
        in_channels: image channels.
        channels: the four blocks' widths; ``None`` (default): ``(64, 160, 320, 640)``.
        style: ``"maxpool"`` (its only style: a 2x2 max-pool after each block) or ``None``.
        bn_affine: learnable BN scale and shift. Default: ``True``.
        pool: ``"avg"`` (global average pool -> ``channels[-1]`` features, TADAM/FEAT) or
            ``"flatten"`` (``channels[-1] * s * s`` features, MetaOptNet).
        num_classes: size of the linear head (MAML); ``None`` returns features (ProtoNet).
        image_size: input height/width (at least 16: four 2x2 max-pools).
        bias: conv biases (inert under the batch-statistics BN; the reference codes have
            none, the library's recipes keep them as for Conv-4).
        modulation: as :class:`~kml.nets.Conv4`; KML only with ``factorization="channel"``.
        **modulation_options: as :class:`~kml.nets.Conv4`.

    Shapes: ``forward(x (T, B, C, H, W))`` -> ``(T, B, num_classes)`` logits or
    ``(T, B, feature_dim)`` features; a 4-d ``x`` is one task.
    """

    default_channels = (64, 160, 320, 640)
    default_style = "maxpool"
    styles = ("maxpool",)

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] | None = None,
        style: str | None = None,
        bn_affine: bool = True,
        pool: str = "avg",
        num_classes: int | None = None,
        image_size: int = 84,
        modulation: str | ModulationSpec = "none",
        bias: bool = True,
        **modulation_options: Any,
    ) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"image_size {image_size} is too small for ResNet-12's four 2x2 max-pools (16 at least)")
        spec = self.set_options(in_channels=in_channels, channels=channels, style=style, pool=pool,
                                image_size=image_size, modulation=modulation, modulation_options=modulation_options)
        widths = (in_channels,) + self.channels
        self.layers = nn.ModuleList(
            ResidualBlock(widths[i], widths[i + 1], bn_affine, spec, bias, first_layer=(i == 0)) for i in range(4)
        )
        spatial = image_size
        for _ in range(4):
            spatial //= 2
        self.build_head(spatial, num_classes)
        self.reset_parameters()

    @classmethod
    def check_options(cls, *, channels, style, pool, modulation: ModulationSpec) -> None:
        """Four widths, and KML's channel-aligned factorisation only."""
        super().check_options(channels=channels, style=style, pool=pool, modulation=modulation)
        if channels is not None and len(channels) != 4:
            raise ValueError(f"ResNet-12 has 4 blocks: channels must list 4 widths, got {list(channels)}")
        layer = get_modulation(modulation.name)
        kernel_modulated = layer is not None and issubclass(layer, KernelModulatedConv2d)
        if kernel_modulated and modulation.factorization != "channel":
            raise ValueError(
                f"ResNet-12 offers only modulation.factorization=channel, got {modulation.factorization!r}: the "
                "published factor sizes are defined for Conv-4 only, and a full generator would need over a billion "
                "parameters at width 640"
            )

    def reset_parameters(self) -> None:
        """Kaiming-normal conv weights (fan-out, leaky ReLU) and zero conv biases, as the
        reference codes; Xavier-uniform head; generators keep their identity initialisation."""
        for block in self.layers:
            for unit in (*block.units(), block.shortcut):
                nn.init.kaiming_normal_(unit.conv.weight, a=LEAKY_SLOPE, mode="fan_out", nonlinearity="leaky_relu")
                if unit.conv.bias is not None:
                    nn.init.zeros_(unit.conv.bias)
        self.reset_head()

    def modulated_layers(self) -> list[ModulatedLayer]:
        """The modulated layer of each 3x3 convolution (12), in the order they run."""
        return [unit.modulated for block in self.layers for unit in block.units() if unit.modulated is not None]

    def activation_floats(self, image_size: int) -> int:
        """Floats of the conv activations of one image (three 3x3 convolutions and the
        shortcut per block, at the block's input resolution)."""
        size, total = image_size, 0
        for channels in self.channels:
            total += 4 * channels * size * size
            size //= 2
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
            modulation: one modulation per 3x3 convolution (12, :meth:`modulations`), each
                holding ``T`` tasks; ``None``: unmodulated.
            params: optional replacements for adaptable parameters by name
                (``"layers.0.conv1.conv.weight"``, ``"head.weight"``, ...), possibly with a
                leading ``T`` dimension.
        """

        def trunk(h: Tensor, num_tasks: int, params: dict[str, Tensor]) -> Tensor:
            for i, block in enumerate(self.layers):
                mods = modulation[3 * i : 3 * i + 3] if modulation is not None else None
                h = block.forward_grouped(h, num_tasks, mods, params, f"layers.{i}.")
            return h

        return self.forward_tasks(x, params, trunk)
