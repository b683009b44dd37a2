"""Task-conditioned modulation: FiLM (MMAML) and Kernel Modulation (KML).

Kernel modulation (Abdollahzadeh et al., NeurIPS 2021) rescales *every element*
of a convolution kernel with a task-specific factor generated from a task
embedding ``v``::

    W_hat = W * (1 + M(v))          b_hat = b + db(v)
    M(v)  = sum_r g1_r(v) outer g2_r(v)   (reshaped to the kernel shape)
    db(v) = g3(v)

With the default *channel-aligned* factorisation, ``g1(v)`` has one entry per
output channel and ``g2(v)`` one per input-channel x kernel position, so the
outer product is exactly ``(C_out, C_in*k*k)``. The published code instead used
factor sizes ``(3*C_out, 3*C_in)`` (``factor_shape``) and no ``1 +``
(``identity=False``); both are options, as is a full (non-factorised) generator.

Generator output layers start at zero (the ``g1`` and ``g3`` heads; ``g2`` keeps
a random init so that ``M`` can leave zero), so a freshly built modulated layer
computes exactly the plain convolution with the same weights.

Example::

    >>> import torch
    >>> from kml.modulation import KernelModulatedConv2d
    >>> conv = KernelModulatedConv2d(3, 32, 3, task_dim=128, padding=1)
    >>> x = torch.randn(8, 3, 84, 84)             # one task, 8 images
    >>> v = torch.randn(128)                      # its task embedding
    >>> conv(x, v).shape
    torch.Size([8, 32, 84, 84])
    >>> xs = torch.randn(4, 8, 3, 84, 84)         # 4 tasks at once
    >>> vs = torch.randn(4, 128)
    >>> conv(xs, vs).shape                        # one grouped convolution
    torch.Size([4, 8, 32, 84, 84])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from kml.functional import TaskLinear, conv2d_grouped, film_grouped, grouped_to_tasks, tasks_to_grouped

__all__ = [
    "MLP",
    "KernelModulation",
    "FeatureModulation",
    "KernelGenerator",
    "FiLMGenerator",
    "KernelModulatedConv2d",
    "FiLM",
    "modulate_kernel",
    "modulated_conv2d_grouped",
    "published_factor_shape",
    "count_parameters",
    "conv4_generator_parameter_counts",
]

FACTORIZATIONS = ("channel", "published", "full")


class MLP(nn.Sequential):
    """``task_dim -> hidden... -> out_features`` with ReLU between layers.

    The output layer is initialised to ``weight = 0`` and ``bias = output_bias`` when
    ``zero_init`` is set, so the MLP starts as a constant function.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (),
        zero_init: bool = True,
        output_bias: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [TaskLinear(width, h), nn.ReLU(inplace=False)]
            width = h
        layers.append(TaskLinear(width, out_features))
        super().__init__(*layers)
        if zero_init:
            nn.init.zeros_(self[-1].weight)
            nn.init.constant_(self[-1].bias, output_bias)


@dataclass
class KernelModulation:
    """Per-task kernel modulation of one conv layer.

    Attributes:
        scale: ``(T, C_out, C_in, k, k)``, the factor ``J + M(v)`` (or ``M(v)``).
        shift: ``(T, C_out)`` bias shift ``db(v)``, or ``None``.
    """

    scale: Tensor
    shift: Tensor | None

    def select(self, index: slice) -> "KernelModulation":
        """The modulation of a subset of tasks (``index`` over ``T``)."""
        return KernelModulation(self.scale[index], None if self.shift is None else self.shift[index])


@dataclass
class FeatureModulation:
    """Per-task FiLM of one layer: ``x * scale + shift``, both ``(T, C)``."""

    scale: Tensor
    shift: Tensor

    def select(self, index: slice) -> "FeatureModulation":
        return FeatureModulation(self.scale[index], self.shift[index])


def modulate_kernel(
    weight: Tensor, bias: Tensor | None, modulation: KernelModulation
) -> tuple[Tensor, Tensor | None]:
    """Apply a kernel modulation: ``W_hat = W * scale``, ``b_hat = b + shift``.

    Args:
        weight: ``(C_out, C_in, k, k)`` or per task ``(T, C_out, C_in, k, k)``.
        bias: ``None``, ``(C_out,)`` or ``(T, C_out)``.

    Returns:
        ``(T, C_out, C_in, k, k)`` and ``(T, C_out)`` (or ``None`` without a bias).
    """
    weight_hat = weight * modulation.scale
    if bias is None:
        return weight_hat, None
    bias_hat = bias if modulation.shift is None else bias + modulation.shift
    if bias_hat.dim() == 1:
        bias_hat = bias_hat.unsqueeze(0).expand(weight_hat.shape[0], -1)
    return weight_hat, bias_hat


def modulated_conv2d_grouped(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    modulation: KernelModulation | None,
    num_tasks: int,
    stride: int = 1,
    padding: int = 0,
) -> Tensor:
    """A kernel-modulated convolution of ``T`` tasks in the grouped layout.

    The one code path of kernel modulation: :class:`KernelModulatedConv2d` and the
    learners' :class:`~kml.nets.Conv4` both call it.

    Args:
        x: ``(B, T*C_in, H, W)`` (see :mod:`kml.functional`).
        weight: ``(C_out, C_in, k, k)`` or per task ``(T, C_out, C_in, k, k)`` (MAML's
            adapted weights).
        bias: ``None``, ``(C_out,)`` or ``(T, C_out)``.
        modulation: the tasks' :class:`KernelModulation`; ``None`` is the plain convolution.

    Returns:
        ``(B, T*C_out, H', W')``.
    """
    if modulation is not None:
        weight, bias = modulate_kernel(weight, bias, modulation)
    return conv2d_grouped(x, weight, bias, num_tasks, stride, padding)


def published_factor_shape(in_channels: int, out_channels: int, kernel_size: int, first: bool) -> tuple[int, int]:
    """Factor sizes ``(a, u)`` of the published KML code (``a * u = C_out*C_in*k*k``).

    The first layer is channel aligned, ``(C_out, C_in*k*k)``; later layers use
    ``(k*C_out, k*C_in)`` (not channel aligned), e.g. ``(192, 96)`` for 32 -> 64.
    """
    if first:
        return out_channels, in_channels * kernel_size * kernel_size
    return kernel_size * out_channels, kernel_size * in_channels


class KernelGenerator(nn.Module):
    """Generates a :class:`KernelModulation` for one conv layer from a task embedding.

    Args:
        in_channels, out_channels, kernel_size: the modulated kernel's shape.
        task_dim: size of the task embedding ``v``.
        bias: generate the bias shift ``db(v)`` as well.
        rank: number ``r`` of outer products summed in ``M(v)``.
        hidden: hidden layer sizes of each generator MLP (``()``: one linear layer).
        factorization: ``"channel"`` (``g1 (C_out) x g2 (C_in*k*k)``, default),
            ``"full"`` (one MLP producing every element of ``M``) or ``"published"``
            (factor sizes of the published code, see :func:`published_factor_shape`).
        factor_shape: explicit ``(a, u)`` factor sizes with ``a*u = C_out*C_in*k*k``
            (overrides ``factorization``'s default sizes).
        identity: ``True`` for ``W * (1 + M)`` (paper), ``False`` for ``W * M``
            (published code). Either way the layer is the identity modulation at
            initialisation.
        first_layer: used by ``factorization="published"`` only.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        task_dim: int,
        bias: bool = True,
        rank: int = 1,
        hidden: Sequence[int] = (),
        factorization: str = "channel",
        factor_shape: tuple[int, int] | None = None,
        identity: bool = True,
        first_layer: bool = False,
    ) -> None:
        super().__init__()
        if factorization not in FACTORIZATIONS:
            raise ValueError(f"factorization must be one of {FACTORIZATIONS}, got {factorization!r}")
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.kernel_shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.numel = out_channels * in_channels * kernel_size * kernel_size
        self.factorization = factorization
        self.identity = identity
        self.rank = rank
        if factorization == "full":
            self.full = MLP(task_dim, self.numel, hidden, zero_init=True, output_bias=0.0 if identity else 1.0)
        else:
            if factor_shape is None:
                factor_shape = (
                    published_factor_shape(in_channels, out_channels, kernel_size, first_layer)
                    if factorization == "published"
                    else (out_channels, in_channels * kernel_size * kernel_size)
                )
            a, u = factor_shape
            if a * u != self.numel:
                raise ValueError(f"factor_shape {factor_shape} does not multiply to the kernel size {self.numel}")
            self.factor_shape = (a, u)
            # M = g1 (x) g2 starts at 0 (identity) or 1 (no-J variant). g1 starts
            # constant; g2 keeps a random init in the identity case so that the
            # gradient w.r.t. g1 is non-zero (both zero would be a saddle).
            self.g1 = MLP(task_dim, rank * a, hidden, zero_init=True, output_bias=0.0 if identity else 1.0 / rank)
            self.g2 = MLP(task_dim, rank * u, hidden, zero_init=not identity, output_bias=1.0)
        self.g3 = MLP(task_dim, out_channels, hidden, zero_init=True) if bias else None

    def forward(self, task_embedding: Tensor) -> KernelModulation:
        """``task_embedding (T, task_dim)`` -> :class:`KernelModulation` with ``T`` tasks."""
        num_tasks = task_embedding.shape[0]
        if self.factorization == "full":
            m = self.full(task_embedding)
        else:
            a, u = self.factor_shape
            g1 = self.g1(task_embedding).reshape(num_tasks, self.rank, a)
            g2 = self.g2(task_embedding).reshape(num_tasks, self.rank, u)
            m = torch.bmm(g1.transpose(1, 2), g2)  # (T, a, u) = sum_r g1_r g2_r^T
        m = m.reshape(num_tasks, *self.kernel_shape)
        scale = 1.0 + m if self.identity else m
        shift = self.g3(task_embedding) if self.g3 is not None else None
        return KernelModulation(scale, shift)


class FiLMGenerator(nn.Module):
    """MMAML's FiLM head: ``v -> (1 + dgamma(v), beta(v))`` for ``num_features`` channels.

    The output layer starts at zero, so FiLM is the identity at initialisation.
    """

    def __init__(self, num_features: int, task_dim: int, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        self.num_features = num_features
        self.head = MLP(task_dim, 2 * num_features, hidden, zero_init=True)

    def forward(self, task_embedding: Tensor) -> FeatureModulation:
        """``task_embedding (T, task_dim)`` -> :class:`FeatureModulation` of ``(T, C)``."""
        dgamma, beta = self.head(task_embedding).split(self.num_features, dim=-1)
        return FeatureModulation(1.0 + dgamma, beta)


def _as_tasks(x: Tensor, task_embedding: Tensor, ndim: int) -> tuple[Tensor, Tensor, bool]:
    """Accept one task (``x`` with ``ndim`` dims, ``v (d,)``) or many; return batched + flag."""
    if x.dim() == ndim:
        if task_embedding.dim() != 1:
            raise ValueError(
                f"one task: task_embedding must be (task_dim,), got {tuple(task_embedding.shape)}"
            )
        return x.unsqueeze(0), task_embedding.unsqueeze(0), True
    if x.dim() == ndim + 1:
        if task_embedding.dim() != 2 or task_embedding.shape[0] != x.shape[0]:
            raise ValueError(
                f"{x.shape[0]} tasks: task_embedding must be ({x.shape[0]}, task_dim), "
                f"got {tuple(task_embedding.shape)}"
            )
        return x, task_embedding, False
    raise ValueError(f"expected a {ndim}-d (one task) or {ndim + 1}-d (T tasks) input, got {x.dim()}-d")


class KernelModulatedConv2d(nn.Module):
    """A 2-d convolution whose kernel is modulated element-wise by a task embedding.

    ``forward(x, task_embedding)`` computes ``conv2d(x, W * (1 + M(v)), b + db(v))``.
    This is the layer the library's learners train with: the modulated blocks of
    :class:`~kml.nets.Conv4` are instances of it.

    Shapes:
        - one task: ``x (B, C_in, H, W)``, ``task_embedding (task_dim,)`` ->
          ``(B, C_out, H', W')``;
        - ``T`` tasks: ``x (T, B, C_in, H, W)``, ``task_embedding (T, task_dim)`` ->
          ``(T, B, C_out, H', W')``, computed as one grouped convolution.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, bias: as ``nn.Conv2d``
            (square kernels, ``groups=1``, ``dilation=1``).
        task_dim: size of the task embedding.
        rank, hidden, factorization, factor_shape, identity: see :class:`KernelGenerator`.
        first_layer: with ``factorization="published"``, whether this is the network's
            first layer (channel-aligned factors ``(C_out, C_in*k*k)``); later layers get
            the published ``(k*C_out, k*C_in)``. Default: ``False``.

    The weight and bias are initialised as ``nn.Conv2d``'s; at initialisation the
    layer computes exactly ``nn.Conv2d`` with the same weight and bias.

    The bias and its shift ``db(v)`` are kept for fidelity with the paper and the
    published code, but under a following batch normalisation with batch statistics
    (every block of :class:`~kml.nets.Conv4`) a per-channel constant added before the
    normalisation cancels exactly: they change nothing there (``docs/modulation.md``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        task_dim: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        rank: int = 1,
        hidden: Sequence[int] = (),
        factorization: str = "channel",
        factor_shape: tuple[int, int] | None = None,
        identity: bool = True,
        first_layer: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.task_dim = task_dim
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.generator = KernelGenerator(
            in_channels,
            out_channels,
            kernel_size,
            task_dim,
            bias=bias,
            rank=rank,
            hidden=hidden,
            factorization=factorization,
            factor_shape=factor_shape,
            identity=identity,
            first_layer=first_layer,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise weight and bias exactly as ``nn.Conv2d`` does."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size * self.kernel_size
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def modulation(self, task_embedding: Tensor) -> KernelModulation:
        """The tasks' modulation ``(J + M(v), db(v))``; ``task_embedding (T, task_dim)``."""
        return self.generator(task_embedding)

    def modulated_parameters(self, task_embedding: Tensor) -> tuple[Tensor, Tensor | None]:
        """Per-task kernels ``(T, C_out, C_in, k, k)`` and biases ``(T, C_out)``."""
        return modulate_kernel(self.weight, self.bias, self.modulation(task_embedding))

    def forward_grouped(
        self,
        x: Tensor,
        num_tasks: int,
        modulation: KernelModulation | None,
        weight: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> Tensor:
        """The convolution in the grouped layout ``(B, T*C_in, H, W)`` -> ``(B, T*C_out, H', W')``,
        with a modulation computed beforehand (:meth:`modulation`).

        ``weight`` / ``bias`` replace the layer's own (e.g. MAML's per-task adapted
        ``(T, C_out, C_in, k, k)`` weights); ``modulation=None`` is the plain convolution.
        """
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        return modulated_conv2d_grouped(x, weight, bias, modulation, num_tasks, self.stride, self.padding)

    def forward(self, x: Tensor, task_embedding: Tensor) -> Tensor:
        x, task_embedding, single = _as_tasks(x, task_embedding, ndim=4)
        num_tasks = x.shape[0]
        y = self.forward_grouped(tasks_to_grouped(x), num_tasks, self.modulation(task_embedding))
        y = grouped_to_tasks(y, num_tasks)
        return y[0] if single else y

    def extra_repr(self) -> str:
        gen = self.generator
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"task_dim={self.task_dim}, stride={self.stride}, padding={self.padding}, "
            f"bias={self.bias is not None}, factorization={gen.factorization!r}"
        )
        if gen.factorization != "full":
            text += f", factor_shape={gen.factor_shape}"
        if gen.rank != 1:
            text += f", rank={gen.rank}"
        if not gen.identity:
            text += ", identity=False"
        return text


class FiLM(nn.Module):
    """Feature-wise linear modulation (MMAML): ``x * (1 + dgamma(v)) + beta(v)`` per channel.

    Shapes: ``x (B, C, H, W)`` with ``task_embedding (task_dim,)``, or
    ``x (T, B, C, H, W)`` with ``task_embedding (T, task_dim)``; output as ``x``.
    Applied after batch normalisation in the Conv-4 blocks, whose FiLM layers are
    instances of this class.
    """

    def __init__(self, num_features: int, task_dim: int, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        self.num_features = num_features
        self.task_dim = task_dim
        self.generator = FiLMGenerator(num_features, task_dim, hidden)

    def modulation(self, task_embedding: Tensor) -> FeatureModulation:
        """``(1 + dgamma(v), beta(v))``, each ``(T, C)``; ``task_embedding (T, task_dim)``."""
        return self.generator(task_embedding)

    @staticmethod
    def forward_grouped(x: Tensor, modulation: FeatureModulation | None) -> Tensor:
        """FiLM in the grouped layout ``(B, T*C, H, W)`` with a modulation computed
        beforehand (:meth:`modulation`); ``None`` leaves ``x`` unchanged."""
        if modulation is None:
            return x
        return film_grouped(x, modulation.scale, modulation.shift)

    def forward(self, x: Tensor, task_embedding: Tensor) -> Tensor:
        x, task_embedding, single = _as_tasks(x, task_embedding, ndim=4)
        num_tasks = x.shape[0]
        y = grouped_to_tasks(self.forward_grouped(tasks_to_grouped(x), self.modulation(task_embedding)), num_tasks)
        return y[0] if single else y

    def extra_repr(self) -> str:
        return f"{self.num_features}, task_dim={self.task_dim}"


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements of ``module``."""
    return sum(p.numel() for p in module.parameters())


def conv4_generator_parameter_counts(
    channels: Sequence[int] = (32, 64, 128, 256),
    in_channels: int = 3,
    kernel_size: int = 3,
    task_dim: int = 128,
) -> dict[str, int]:
    """Generator parameter counts of KML on a Conv-4 (one linear head per generator).

    Returns ``{"full": ..., "published": ..., "channel": ...}``: a full generator
    producing every kernel and bias element, the factorised heads of the published
    code, and this library's channel-aligned factorisation. Built on the ``meta``
    device, so nothing is allocated.
    """
    counts: dict[str, int] = {}
    for factorization in FACTORIZATIONS:
        total = 0
        width = in_channels
        with torch.device("meta"):
            for i, out_channels in enumerate(channels):
                gen = KernelGenerator(
                    width, out_channels, kernel_size, task_dim, factorization=factorization, first_layer=(i == 0)
                )
                total += count_parameters(gen)
                width = out_channels
        counts[factorization] = total
    return counts
