"""Networks: the Conv-4 backbone (plain, FiLM- or kernel-modulated) and the task encoder.

All networks take a batch of ``T`` tasks, ``x (T, B, C, H, W)``, and run them
in one computation (see :mod:`kml.functional`). :class:`Conv4` reads its
parameters through attribute access, so ``torch.func.functional_call`` can swap
them, and also takes an explicit ``params`` dict whose tensors may carry a
leading task dimension (MAML's per-task adapted weights).

A modulated Conv-4 is built from the layers users import: its convolutions are
:class:`~kml.modulation.KernelModulatedConv2d` (KML) and its FiLM layers
:class:`~kml.modulation.FiLM` (MMAML), each owning its generator.
"""

from __future__ import annotations

from typing import Iterator, Sequence, Union

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from kml.functional import (
    TaskLinear,
    batch_norm_grouped,
    conv2d_grouped,
    flatten_grouped,
    global_avg_pool_grouped,
    linear_tasks,
    tasks_to_grouped,
)
from kml.modulation import (
    FACTORIZATIONS,
    FeatureModulation,
    FiLM,
    KernelModulatedConv2d,
    KernelModulation,
)

__all__ = ["Conv4", "ConvBlock", "TaskEncoder", "LayerModulation", "MODULATIONS", "STYLES", "POOLS"]

LayerModulation = Union[KernelModulation, FeatureModulation, None]
MODULATIONS = ("none", "film", "kml")
STYLES = ("strided", "maxpool")
POOLS = ("avg", "flatten")


def _spatial_size(image_size: int, style: str, depth: int) -> int:
    size = image_size
    for _ in range(depth):
        size = (size - 1) // 2 + 1 if style == "strided" else size // 2
    return size


class ConvBlock(nn.Module):
    """Parameter holder of one Conv-4 block.

    ``conv`` is an ``nn.Conv2d`` or, with kernel modulation, a
    :class:`~kml.modulation.KernelModulatedConv2d`; ``bn`` holds the optional BN
    affine parameters; ``film`` is the block's :class:`~kml.modulation.FiLM` (MMAML).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        bn_affine: bool,
        modulation: str = "none",
        bias: bool = True,
        task_dim: int = 128,
        hidden: Sequence[int] = (),
        rank: int = 1,
        factorization: str = "channel",
        identity: bool = True,
        first_layer: bool = False,
    ) -> None:
        super().__init__()
        if modulation == "kml":
            self.conv = KernelModulatedConv2d(
                in_channels, out_channels, 3, task_dim, stride=stride, padding=1, bias=bias, rank=rank,
                hidden=hidden, factorization=factorization, identity=identity, first_layer=first_layer,
            )
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, affine=True, track_running_stats=False) if bn_affine else None
        self.film = FiLM(out_channels, task_dim, hidden) if modulation == "film" else None

    @property
    def modulated(self) -> nn.Module | None:
        """The block's modulated layer (its generator's owner), or ``None``."""
        if isinstance(self.conv, KernelModulatedConv2d):
            return self.conv
        return self.film


class Conv4(nn.Module):
    """Conv-4 backbone, vectorised over tasks, optionally modulated by a task embedding.

    Block ``l``: ``conv3x3 -> BatchNorm (batch statistics per task) -> [FiLM] -> ReLU
    [-> max-pool 2x2]``; with kernel modulation the conv is a
    :class:`~kml.modulation.KernelModulatedConv2d` (``W * (1 + M(v))``, ``b + db(v)``),
    with FiLM each block has a :class:`~kml.modulation.FiLM` after its BatchNorm.

    Args:
        in_channels: image channels.
        channels: output channels of the blocks; ``(32, 64, 128, 256)`` is
            MMAML/KML's network, ``(32,)*4`` or ``(64,)*4`` the classic MAML one.
        style: ``"strided"`` (3x3 stride-2 conv, MMAML/KML; 84 -> 42 -> 21 -> 11 -> 6)
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
        modulation: ``"none"``, ``"film"`` or ``"kml"``.
        task_dim: size of the task embedding (modulated backbones).
        hidden: hidden sizes of the generator MLPs.
        rank, factorization, identity: kernel-modulation options (see
            :class:`~kml.modulation.KernelGenerator`); ``factorization="published"``
            gives the first block channel-aligned factors and later blocks ``(3*C_out, 3*C_in)``.

    Shapes: ``forward(x (T, B, C, H, W))`` -> ``(T, B, num_classes)`` logits or
    ``(T, B, feature_dim)`` features. A 4-d ``x (B, C, H, W)`` is one task.

    The generators are part of the backbone module but not of its *adaptable*
    parameters (:meth:`named_adaptable_parameters`): MAML's inner loop and the
    backbone optimiser see the conv, BN and head parameters only.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256),
        style: str = "strided",
        bn_affine: bool = False,
        pool: str = "avg",
        num_classes: int | None = None,
        image_size: int = 84,
        modulation: str = "none",
        bias: bool = True,
        task_dim: int = 128,
        hidden: Sequence[int] = (),
        rank: int = 1,
        factorization: str = "channel",
        identity: bool = True,
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if modulation not in MODULATIONS:
            raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
        if factorization not in FACTORIZATIONS:
            raise ValueError(f"factorization must be one of {FACTORIZATIONS}, got {factorization!r}")
        self.in_channels = in_channels
        self.channels = tuple(int(c) for c in channels)
        self.style = style
        self.pool = pool
        self.image_size = image_size
        self.modulation = modulation
        self.task_dim = task_dim if modulation != "none" else None
        self.stride = 2 if style == "strided" else 1
        widths = (in_channels,) + self.channels
        self.blocks = nn.ModuleList(
            ConvBlock(
                widths[i], widths[i + 1], self.stride, bn_affine, modulation=modulation, bias=bias, task_dim=task_dim,
                hidden=hidden, rank=rank, factorization=factorization, identity=identity, first_layer=(i == 0),
            )
            for i in range(len(self.channels))
        )
        spatial = _spatial_size(image_size, style, len(self.channels))
        if spatial < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(self.channels)} blocks")
        self.feature_dim = self.channels[-1] * (1 if pool == "avg" else spatial * spatial)
        self.head = nn.Linear(self.feature_dim, num_classes) if num_classes else None
        self.num_classes = num_classes
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform conv and head weights, zero biases (MMAML); generators keep
        their identity initialisation."""
        for block in self.blocks:
            nn.init.xavier_uniform_(block.conv.weight)
            if block.conv.bias is not None:
                nn.init.zeros_(block.conv.bias)
        if self.head is not None:
            nn.init.xavier_uniform_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(in_channels, out_channels)`` of each block."""
        widths = (self.in_channels,) + self.channels
        return [(widths[i], widths[i + 1]) for i in range(len(self.channels))]

    def modulated_layers(self) -> list[nn.Module]:
        """The :class:`~kml.modulation.KernelModulatedConv2d` or :class:`~kml.modulation.FiLM`
        of each block (empty for a plain backbone)."""
        return [block.modulated for block in self.blocks if block.modulated is not None]

    def _is_generator(self, name: str) -> bool:
        return ".generator." in name

    def named_adaptable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Conv, BN and head parameters by name: everything but the generators."""
        return ((n, p) for n, p in self.named_parameters() if not self._is_generator(n))

    def generator_parameters(self) -> list[nn.Parameter]:
        """The parameters of the blocks' modulation generators."""
        return [p for n, p in self.named_parameters() if self._is_generator(n)]

    def modulations(self, task_embedding: Tensor) -> list[LayerModulation] | None:
        """Per-block modulation of ``T`` tasks from ``task_embedding (T, task_dim)``
        (``None`` for a plain backbone)."""
        if self.modulation == "none":
            return None
        return [block.modulated.modulation(task_embedding) for block in self.blocks]

    def forward(
        self,
        x: Tensor,
        modulation: Sequence[LayerModulation] | None = None,
        params: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Run ``T`` tasks.

        Args:
            x: ``(T, B, C, H, W)`` (or ``(B, C, H, W)`` for one task).
            modulation: one :class:`KernelModulation` / :class:`FeatureModulation` /
                ``None`` per block, each holding ``T`` tasks (:meth:`modulations`);
                ``None``: unmodulated (the identity modulation).
            params: optional replacements for adaptable parameters by name
                (``"blocks.0.conv.weight"``, ``"head.weight"``, ...); a tensor may have a
                leading ``T`` dimension.
        """
        single = x.dim() == 4
        if single:
            x = x.unsqueeze(0)
        num_tasks = x.shape[0]
        params = params or {}

        def get(name: str, default: Tensor | None) -> Tensor | None:
            return params.get(name, default)

        h = tasks_to_grouped(x)
        for i, block in enumerate(self.blocks):
            prefix = f"blocks.{i}."
            weight = get(prefix + "conv.weight", block.conv.weight)
            bias = get(prefix + "conv.bias", block.conv.bias)
            mod = modulation[i] if modulation is not None else None
            if isinstance(block.conv, KernelModulatedConv2d):
                h = block.conv.forward_grouped(h, num_tasks, mod, weight, bias)
            else:
                h = conv2d_grouped(h, weight, bias, num_tasks, stride=self.stride, padding=1)
            if block.bn is not None:
                h = batch_norm_grouped(
                    h, num_tasks, get(prefix + "bn.weight", block.bn.weight), get(prefix + "bn.bias", block.bn.bias)
                )
            else:
                h = batch_norm_grouped(h, num_tasks)
            if block.film is not None:
                h = block.film.forward_grouped(h, mod)
            h = F.relu(h)
            if self.style == "maxpool":
                h = F.max_pool2d(h, 2)
        features = global_avg_pool_grouped(h, num_tasks) if self.pool == "avg" else flatten_grouped(h, num_tasks)
        if self.head is not None:
            features = linear_tasks(features, get("head.weight", self.head.weight), get("head.bias", self.head.bias))
        return features[0] if single else features


class TaskEncoder(nn.Module):
    """Task encoder ``h_phi``: support images -> task embedding ``v``.

    A strided Conv-4 trunk with affine BN (batch statistics per task), global
    average pooling, ``Linear(channels[-1], task_dim) + ReLU`` per image, then the
    mean over the support images (labels are not used).

    Shapes: ``support (T, N*K, C, H, W)`` -> ``(T, task_dim)``; a 4-d support set
    (one task) gives ``(task_dim,)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256),
        task_dim: int = 128,
        image_size: int = 84,
    ) -> None:
        super().__init__()
        self.task_dim = task_dim
        self.trunk = Conv4(in_channels, channels, style="strided", bn_affine=True, pool="avg", image_size=image_size)
        self.project = TaskLinear(self.trunk.feature_dim, task_dim)

    def forward(self, support: Tensor) -> Tensor:
        single = support.dim() == 4
        if single:
            support = support.unsqueeze(0)
        per_image = F.relu(self.project(self.trunk(support)))  # (T, N*K, task_dim)
        embedding = per_image.mean(dim=1)
        return embedding[0] if single else embedding
