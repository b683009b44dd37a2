"""Task-conditioned modulation: FiLM (MMAML) and Kernel Modulation (KML).

Kernel modulation (Abdollahzadeh et al., NeurIPS 2021) rescales *every element*
of a convolution kernel with a task-specific factor generated from a task
embedding ``v``:

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

Modulations are registered by name (:func:`register_modulation`): ``none``, ``film``
(:class:`FiLM`) and ``kml`` (:class:`KernelModulatedConv2d`) here, and any layer of a
user's own module (``docs/extending.md``). A registered layer derives from
:class:`ModulatedConv2d` (it modulates a convolution's kernel) or from
:class:`ModulatedFeatures` (it modulates the normalised output of a convolution), and
its generators derive from :class:`Generator`: that type, not a parameter name, is what
keeps them out of MAML's inner loop and in the modulation optimiser.

The stable API is this module's ``__all__``: the base classes and records of an extension
(:class:`ConvSite`, :class:`Generator`, :class:`ModulatedLayer`, :class:`ModulatedConv2d`,
:class:`ModulatedFeatures`, :class:`ModulationSpec`, :class:`KernelModulation`,
:class:`FeatureModulation`), the public layers (:class:`KernelModulatedConv2d`,
:class:`FiLM`) and the registry functions. The other public names are helpers of the
built-in layers and may change between minor versions.

Examples:
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

from kml.functional import (
    TaskLinear,
    conv2d_factorized_mask,
    conv2d_grouped,
    current_per_task_conv,
    film_grouped,
    grouped_to_tasks,
    tasks_to_grouped,
)
from kml.modulation_spec import FACTORIZATIONS, ModulationSpec
from kml.registry import MODULATIONS, get_modulation, list_modulations

#: the library's defaults of the ``modulation.*`` settings (:class:`ModulationSpec` is their one source)
_DEFAULTS = ModulationSpec()

#: The stable extension API: these names keep their meaning and signatures within a major
#: version. The other public names of this module (``KernelGenerator``, ``FiLMGenerator``,
#: ``KernelFactors``, ``MLP``, ``modulate_kernel``, ``modulated_conv2d_grouped``,
#: ``published_factor_shape``, ``count_parameters``, ``conv4_generator_parameter_counts``)
#: are helpers of the built-in layers and may change between minor versions.
__all__ = [
    "ConvSite",
    "Generator",
    "ModulatedLayer",
    "ModulatedConv2d",
    "ModulatedFeatures",
    "ModulationSpec",
    "KernelModulation",
    "FeatureModulation",
    "KernelModulatedConv2d",
    "FiLM",
    "register_modulation",
    "get_modulation",
    "list_modulations",
]


class Generator(nn.Module):
    """Base class of every modulation generator: maps task embeddings ``(T, task_dim)`` to
    the per-task modulation of one layer.

    Backbones find their generator parameters by this type (every parameter of a
    ``Generator`` submodule, whatever the attribute holding it is called): they are kept
    out of MAML's inner loop and trained by the modulation optimiser (the task encoder's
    learning rate, ``train.lr_modulation``).
    """


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
class KernelFactors:
    """The factors of a factorised kernel modulation: ``M = sum_r rows_r (x) cols_r``, an
    ``(a, u)`` outer product per task reshaped to the kernel (:class:`KernelGenerator`).

    Attributes:
        rows: ``(T, r, a)``.
        cols: ``(T, r, u)``, with ``a * u = C_out*C_in*k*k``.
        identity: the scale is ``J + M`` (``True``) or ``M``.
        kernel_shape: ``(C_out, C_in, k, k)``.
    """

    rows: Tensor
    cols: Tensor
    identity: bool
    kernel_shape: tuple[int, int, int, int]

    def scale(self) -> Tensor:
        """The per-task factor ``J + M`` (or ``M``), ``(T, C_out, C_in, k, k)``."""
        m = torch.bmm(self.rows.transpose(1, 2), self.cols)  # (T, a, u) = sum_r g1_r g2_r^T
        m = m.reshape(self.rows.shape[0], *self.kernel_shape)
        return 1.0 + m if self.identity else m

    def select(self, index: slice) -> "KernelFactors":
        """The factors of a subset of tasks (``index`` over ``T``)."""
        return KernelFactors(self.rows[index], self.cols[index], self.identity, self.kernel_shape)


class KernelModulation:
    """Per-task kernel modulation of one conv layer.

    Built from ``scale`` directly, or from the ``factors`` of a factorised generator, in
    which case ``scale`` is computed from them when first read: the ``shared``
    per-task convolution (:func:`kml.functional.per_task_conv`) uses the factors and never
    builds it.

    Attributes:
        scale: ``(T, C_out, C_in, k, k)``, the factor ``J + M(v)`` (or ``M(v)``).
        shift: ``(T, C_out)`` bias shift ``db(v)``, or ``None``.
        factors: :class:`KernelFactors`, or ``None`` (a full generator, or a scale given
            directly).
    """

    __slots__ = ("_scale", "shift", "factors")

    def __init__(self, scale: Tensor | None = None, shift: Tensor | None = None,
                 factors: KernelFactors | None = None) -> None:
        if scale is None and factors is None:
            raise ValueError("a KernelModulation needs its scale or its factors")
        self._scale = scale
        self.shift = shift
        self.factors = factors

    @property
    def scale(self) -> Tensor:
        if self._scale is None:
            self._scale = self.factors.scale()
        return self._scale

    def select(self, index: slice) -> "KernelModulation":
        """The modulation of a subset of tasks (``index`` over ``T``)."""
        shift = None if self.shift is None else self.shift[index]
        if self.factors is not None:
            return KernelModulation(None if self._scale is None else self._scale[index], shift,
                                    self.factors.select(index))
        return KernelModulation(self.scale[index], shift)

    def __repr__(self) -> str:
        scale = "from factors" if self._scale is None else tuple(self._scale.shape)
        shift = None if self.shift is None else tuple(self.shift.shape)
        return f"KernelModulation(scale={scale}, shift={shift}, factorised={self.factors is not None})"


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

    The one code path of kernel modulation: :class:`KernelModulatedConv2d` (and so the
    learners' backbones) calls it. Under :func:`kml.functional.per_task_conv` ``"shared"``
    a factorised modulation of a shared ``weight`` runs as dense convolutions with that
    weight (:func:`kml.functional.conv2d_factorized_mask`); otherwise the per-task kernels
    are built (:func:`modulate_kernel`) and run as :func:`kml.functional.conv2d_grouped`.

    Args:
        x: ``(B, T*C_in, H, W)`` (see :mod:`kml.functional`).
        weight: ``(C_out, C_in, k, k)`` or per task ``(T, C_out, C_in, k, k)`` (MAML's
            adapted weights).
        bias: ``None``, ``(C_out,)`` or ``(T, C_out)``.
        modulation: the tasks' :class:`KernelModulation`; ``None`` is the plain convolution.

    Returns:
        ``(B, T*C_out, H', W')``.

    Raises:
        ValueError: under ``per_task_conv("shared")``, per-task weights or a modulation
            without factors (``factorization="full"``).
    """
    if modulation is not None and current_per_task_conv() == "shared":
        if weight.dim() != 4:
            raise ValueError(
                "per_task_conv('shared') needs a weight shared by all tasks; this kernel-modulated convolution has "
                "per-task weights (e.g. MAML's adapted ones): use grouped, channels_last or unfold"
            )
        factors = modulation.factors
        if factors is None:
            raise ValueError(
                "per_task_conv('shared') needs a factorised kernel modulation ('channel' or 'published'); this one "
                "has no factors (factorization='full'): use grouped, channels_last or unfold"
            )
        if bias is not None and modulation.shift is not None:
            bias = bias + modulation.shift
        return conv2d_factorized_mask(x, weight, bias, factors.rows, factors.cols, factors.identity, num_tasks,
                                      stride, padding)
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


class KernelGenerator(Generator):
    """Generates a :class:`KernelModulation` for one conv layer from a task embedding.

    Args:
        site: the modulated convolution (:class:`ConvSite`): ``C_in``, ``C_out``, ``k``,
            whether it has a bias (then the generator makes the shift ``db(v)`` too) and
            whether it is the first layer (used by ``factorization="published"`` only).
        spec: the generator's settings (:class:`~kml.modulation_spec.ModulationSpec`):
            ``task_dim`` (size of ``v``), ``rank`` (number ``r`` of outer products summed in
            ``M(v)``), ``hidden`` (hidden sizes of each generator MLP; ``()``: one linear
            layer), ``factorization`` (``"channel"``: ``g1 (C_out) x g2 (C_in*k*k)``;
            ``"full"``: one MLP producing every element of ``M``; ``"published"``: the factor
            sizes of the published code, :func:`published_factor_shape`), ``identity``
            (``W * (1 + M)``, the paper, or ``W * M``, the published code; with
            ``init="default"`` the identity modulation at initialisation either way) and
            ``init`` (``"default"``: ``g1`` and ``g3`` start at zero, or at ``1/rank`` and
            ``1`` for ``W * M``; ``"published"``: every head keeps PyTorch's default
            ``nn.Linear`` init, built in the order ``g1``, ``g2``, ``g3``, so that
            ``M = g1(v) g2(v)^T`` starts small, random, task-dependent and of mixed sign;
            it needs ``identity=False``).
        factor_shape: explicit ``(a, u)`` factor sizes with ``a*u = C_out*C_in*k*k``
            (overrides ``factorization``'s sizes).
    """

    def __init__(self, site: ConvSite, spec: ModulationSpec, factor_shape: tuple[int, int] | None = None) -> None:
        super().__init__()
        in_channels, out_channels, kernel_size = site.in_channels, site.out_channels, site.kernel_size
        task_dim, hidden, rank, factorization = spec.task_dim, spec.hidden, spec.rank, spec.factorization
        identity, published = spec.identity, spec.init == "published"
        self.kernel_shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.numel = out_channels * in_channels * kernel_size * kernel_size
        self.factorization = factorization
        self.identity = identity
        self.rank = rank
        self.init = spec.init
        if factorization == "full":
            self.full = MLP(task_dim, self.numel, hidden, zero_init=not published,
                            output_bias=0.0 if identity else 1.0)
        else:
            if factor_shape is None:
                factor_shape = (
                    published_factor_shape(in_channels, out_channels, kernel_size, site.first_layer)
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
            # The published init keeps every head's default init instead.
            self.g1 = MLP(task_dim, rank * a, hidden, zero_init=not published,
                          output_bias=0.0 if identity else 1.0 / rank)
            self.g2 = MLP(task_dim, rank * u, hidden, zero_init=not (identity or published), output_bias=1.0)
        self.g3 = MLP(task_dim, out_channels, hidden, zero_init=not published) if site.bias else None

    def forward(self, task_embedding: Tensor) -> KernelModulation:
        """``task_embedding (T, task_dim)`` -> :class:`KernelModulation` with ``T`` tasks."""
        num_tasks = task_embedding.shape[0]
        shift = self.g3(task_embedding) if self.g3 is not None else None
        if self.factorization == "full":
            m = self.full(task_embedding).reshape(num_tasks, *self.kernel_shape)
            return KernelModulation(1.0 + m if self.identity else m, shift)
        a, u = self.factor_shape
        g1 = self.g1(task_embedding).reshape(num_tasks, self.rank, a)
        g2 = self.g2(task_embedding).reshape(num_tasks, self.rank, u)
        # the scale J + sum_r g1_r g2_r^T is built from the factors when read
        return KernelModulation(shift=shift, factors=KernelFactors(g1, g2, self.identity, self.kernel_shape))


class FiLMGenerator(Generator):
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


@dataclass(frozen=True)
class ConvSite:
    """One modulatable convolution of a backbone, as its modulated layer is built for it.

    Attributes:
        in_channels, out_channels, kernel_size, stride, padding, bias: the convolution
            (square kernels, ``groups=1``).
        first_layer: whether it reads the images (the published KML factor sizes differ
            for the first layer).
    """

    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    bias: bool = True
    first_layer: bool = False


class ModulatedLayer(nn.Module):
    """Base class of every registered modulation's layer.

    A subclass derives from :class:`ModulatedConv2d` or :class:`ModulatedFeatures` and
    implements :meth:`from_spec` and :meth:`modulation`; its generators are
    :class:`Generator` modules. It may override :meth:`check_spec` (its settings, its
    ``modulation.options`` included) and :meth:`statistics` / :meth:`summary` (what the
    diagnostics report about it; without them the diagnostics skip it with a line).

    :func:`register_modulation` sets :attr:`modulation_name` and :attr:`method_suffix`.
    """

    #: ``"kernel"`` (modulates a convolution's weights) or ``"features"`` (its normalised output)
    target: str = ""
    #: the name the layer class is registered under
    modulation_name: str = ""
    #: appended to a learner's modulated name in method names (``"+KML"``: MProtoNet+KML)
    method_suffix: str = ""

    @classmethod
    def from_spec(cls, site: ConvSite, spec: ModulationSpec) -> "ModulatedLayer":
        """The layer for one convolution ``site`` of a backbone, with ``spec``'s settings."""
        raise NotImplementedError(f"{cls.__name__} must implement from_spec(site, spec)")

    @classmethod
    def check_spec(cls, spec: ModulationSpec) -> None:
        """Check the settings of ``spec`` this modulation uses. The default accepts no
        ``options``.

        Raises:
            ValueError: one line naming the setting (as ``spec``'s field, e.g.
                ``options.scale=-1 ...``; the run config prefixes ``modulation.``) and the fix.
        """
        if spec.options:
            raise ValueError(
                f"options={dict(spec.options)} is not valid: modulation {cls.modulation_name or cls.__name__} "
                "takes no options; remove them"
            )

    def modulation(self, task_embedding: Tensor):
        """The per-task modulation of ``T`` tasks, ``task_embedding (T, task_dim)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement modulation(task_embedding)")

    @staticmethod
    def statistics(parts: list) -> dict | None:
        """Diagnostics of this layer's modulation over batches of tasks (``parts``: what
        :meth:`modulation` returned for each batch), a JSON-ready ``dict`` with ``"kind"``
        (:mod:`kml.analysis.diagnostics`); ``None``: none provided (the layer is skipped)."""
        return None

    @staticmethod
    def summary(stats: dict) -> str:
        """One table cell of :meth:`statistics`' result (reports)."""
        return "-"


class ModulatedConv2d(ModulatedLayer):
    """Base class of kernel modulations: a convolution whose weight and bias are modulated
    per task (KML's :class:`KernelModulatedConv2d`).

    It owns ``weight (C_out, C_in, k, k)`` and ``bias (C_out,)`` (or ``None``), initialised
    as ``nn.Conv2d``'s by :meth:`reset_parameters`, which the subclass calls after building
    its generators. A subclass implements :meth:`modulate` (and :meth:`from_spec`,
    :meth:`modulation`); the convolution itself is shared.

    Shapes:
        - one task: ``x (B, C_in, H, W)``, ``task_embedding (task_dim,)`` -> ``(B, C_out, H', W')``;
        - ``T`` tasks: ``x (T, B, C_in, H, W)``, ``task_embedding (T, task_dim)`` ->
          ``(T, B, C_out, H', W')``, one grouped convolution.
    """

    target = "kernel"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """Initialise weight and bias exactly as ``nn.Conv2d`` does."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size * self.kernel_size
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def modulate(self, weight: Tensor, bias: Tensor | None, modulation) -> tuple[Tensor, Tensor | None]:
        """Per-task kernels ``(T, C_out, C_in, k, k)`` and biases ``(T, C_out)`` (or ``None``)
        from ``weight`` (shared or per task) and the tasks' ``modulation``."""
        raise NotImplementedError(f"{type(self).__name__} must implement modulate(weight, bias, modulation)")

    def modulated_parameters(self, task_embedding: Tensor) -> tuple[Tensor, Tensor | None]:
        """Per-task kernels ``(T, C_out, C_in, k, k)`` and biases ``(T, C_out)``."""
        return self.modulate(self.weight, self.bias, self.modulation(task_embedding))

    def forward_grouped(
        self,
        x: Tensor,
        num_tasks: int,
        modulation,
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
        if modulation is not None:
            weight, bias = self.modulate(weight, bias, modulation)
        return conv2d_grouped(x, weight, bias, num_tasks, self.stride, self.padding)

    def forward(self, x: Tensor, task_embedding: Tensor) -> Tensor:
        x, task_embedding, single = _as_tasks(x, task_embedding, ndim=4)
        num_tasks = x.shape[0]
        y = self.forward_grouped(tasks_to_grouped(x), num_tasks, self.modulation(task_embedding))
        y = grouped_to_tasks(y, num_tasks)
        return y[0] if single else y


class ModulatedFeatures(ModulatedLayer):
    """Base class of feature modulations: a layer applied per task and channel to the
    batch-normalised output of a convolution (MMAML's :class:`FiLM`).

    A subclass implements :meth:`forward_grouped` (and :meth:`from_spec`,
    :meth:`modulation`). In a backbone's block it sits after the batch normalisation, as the
    attribute ``block.features`` (FiLM's: ``block.film``), whatever name it is registered under.

    Layout: :meth:`forward_grouped` gets the ``T`` tasks as one grouped tensor
    ``(B, T*C, H, W)`` (task ``t``'s channels at ``[t*C, (t+1)*C)``,
    :func:`kml.functional.tasks_to_grouped`) and what :meth:`modulation` returned for the
    ``T`` tasks (e.g. ``(T, C)``, which ``reshape(1, T*C, 1, 1)`` lines up with the channels).

    Shapes: ``x (B, C, H, W)`` with ``task_embedding (task_dim,)``, or ``x (T, B, C, H, W)``
    with ``task_embedding (T, task_dim)``; output as ``x``.
    """

    target = "features"

    def forward_grouped(self, x: Tensor, modulation) -> Tensor:
        """The modulation in the grouped layout ``(B, T*C, H, W)``, computed beforehand
        (:meth:`modulation`); ``None`` leaves ``x`` unchanged."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_grouped(x, modulation)")

    def forward(self, x: Tensor, task_embedding: Tensor) -> Tensor:
        x, task_embedding, single = _as_tasks(x, task_embedding, ndim=4)
        num_tasks = x.shape[0]
        y = grouped_to_tasks(self.forward_grouped(tasks_to_grouped(x), self.modulation(task_embedding)), num_tasks)
        return y[0] if single else y


def register_modulation(name: str, *, method_suffix: str | None = None):
    """Class decorator: register a modulated layer class under ``name``.

    After registration ``modulation=<name>`` selects it on the command line (with the
    module listed in ``imports``), in :func:`kml.learners.build_learner` and in campaigns.

    Args:
        name: the modulation's name (``modulation.name``). A backbone block keeps a
            feature modulation's layer under ``features`` (FiLM's under ``film``), so
            checkpoint keys do not depend on this name.
        method_suffix: appended to the learner's modulated name in method names, e.g.
            ``"+KML"`` gives ``MProtoNet+KML``. Default: ``"+<name>"``.

    Example:
        ```python
        @register_modulation("scaled")
        class ScaledConv2d(ModulatedConv2d):
            ...
        ```
    """

    def prepare(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, (ModulatedConv2d, ModulatedFeatures))):
            raise TypeError(
                f"register_modulation({name!r}): {cls!r} must subclass ModulatedConv2d or ModulatedFeatures"
            )
        if name == "none":
            raise ValueError("the modulation name 'none' means no modulation; choose another name")
        cls.modulation_name = name
        cls.method_suffix = f"+{name}" if method_suffix is None else method_suffix

    return MODULATIONS.decorator(name, prepare)




def _spread(values: Tensor) -> float:
    """Mean over elements of the standard deviation across tasks (dim 0)."""
    return float(values.std(dim=0).mean()) if values.shape[0] > 1 else 0.0


@register_modulation("film", method_suffix="")
class FiLM(ModulatedFeatures):
    """Feature-wise linear modulation (MMAML): ``x * (1 + dgamma(v)) + beta(v)`` per channel.

    Shapes: ``x (B, C, H, W)`` with ``task_embedding (task_dim,)``, or
    ``x (T, B, C, H, W)`` with ``task_embedding (T, task_dim)``; output as ``x``.
    Applied after batch normalisation in the backbones' blocks, whose FiLM layers are
    instances of this class (``modulation=film``).
    """

    def __init__(self, num_features: int, task_dim: int, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        self.num_features = num_features
        self.task_dim = task_dim
        self.generator = FiLMGenerator(num_features, task_dim, hidden)

    @classmethod
    def from_spec(cls, site: ConvSite, spec: ModulationSpec) -> "FiLM":
        return cls(site.out_channels, spec.task_dim, spec.hidden)

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

    @staticmethod
    def statistics(parts: list[FeatureModulation]) -> dict:
        """FiLM's ``scale`` (mean, min, share negative) and ``|shift|`` with their spreads
        across tasks."""
        scale = torch.cat([p.scale for p in parts])
        shift = torch.cat([p.shift for p in parts])
        return {
            "kind": "film",
            "scale_mean": float(scale.mean()),
            "scale_min": float(scale.min()),
            "scale_negative_share": float((scale < 0).double().mean()),
            "scale_task_spread": _spread(scale),
            "shift_abs_mean": float(shift.abs().mean()),
            "shift_task_spread": _spread(shift),
        }

    @staticmethod
    def summary(stats: dict) -> str:
        return f"{stats['scale_mean']:.2f} ({stats['scale_min']:.2f}, {100 * stats['scale_negative_share']:.0f}%)"

    def extra_repr(self) -> str:
        return f"{self.num_features}, task_dim={self.task_dim}"


@register_modulation("kml", method_suffix="+KML")
class KernelModulatedConv2d(ModulatedConv2d):
    """A 2-d convolution whose kernel is modulated element-wise by a task embedding.

    ``forward(x, task_embedding)`` computes ``conv2d(x, W * (1 + M(v)), b + db(v))``.
    This is the layer the library's learners train with: the kernel-modulated blocks of
    the backbones (``modulation=kml``) are instances of it.

    Shapes:
        - one task: ``x (B, C_in, H, W)``, ``task_embedding (task_dim,)`` ->
          ``(B, C_out, H', W')``;
        - ``T`` tasks: ``x (T, B, C_in, H, W)``, ``task_embedding (T, task_dim)`` ->
          ``(T, B, C_out, H', W')``, computed as one grouped convolution.

    Args:
        in_channels: as ``nn.Conv2d``.
        out_channels: as ``nn.Conv2d``.
        kernel_size: as ``nn.Conv2d`` (square kernels; ``groups=1``, ``dilation=1``).
        stride: as ``nn.Conv2d``. Default: 1.
        padding: as ``nn.Conv2d``. Default: 0.
        bias: as ``nn.Conv2d``; with a bias, the generator also makes its shift
            ``db(v)``. Default: ``True``.
        task_dim: size of the task embedding.
        rank: number of outer products in ``M(v)`` (:class:`KernelGenerator`). Default: 1.
        hidden: hidden sizes of the generator MLPs. Default: ``()``.
        factorization: ``"channel"``, ``"published"`` or ``"full"``
            (:class:`KernelGenerator`). Default: ``"channel"``.
        factor_shape: explicit factor sizes ``(a, u)`` (:class:`KernelGenerator`).
        identity: ``W * (1 + M)`` (``True``) or ``W * M``. Default: ``True``.
        first_layer: with ``factorization="published"``, whether this is the network's
            first layer (channel-aligned factors ``(C_out, C_in*k*k)``); later layers get
            the published ``(k*C_out, k*C_in)``. Default: ``False``.
        init: the generator's start, ``"default"`` or ``"published"``
            (:class:`KernelGenerator`; ``"published"`` needs ``identity=False``). Default:
            ``"default"``.

    The weight and bias are initialised as ``nn.Conv2d``'s; with ``init="default"``, at
    initialisation the layer computes exactly ``nn.Conv2d`` with the same weight and bias.

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
        rank: int = _DEFAULTS.rank,
        hidden: Sequence[int] = _DEFAULTS.hidden,
        factorization: str = _DEFAULTS.factorization,
        factor_shape: tuple[int, int] | None = None,
        identity: bool = _DEFAULTS.identity,
        first_layer: bool = False,
        init: str = _DEFAULTS.init,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.task_dim = task_dim
        site = ConvSite(in_channels, out_channels, kernel_size, stride, padding, bias, first_layer)
        spec = ModulationSpec(name=self.modulation_name, task_dim=task_dim, hidden=tuple(hidden), rank=rank,
                              factorization=factorization, identity=identity, init=init)
        self.generator = KernelGenerator(site, spec, factor_shape)
        self.reset_parameters()

    @classmethod
    def from_spec(cls, site: ConvSite, spec: ModulationSpec) -> "KernelModulatedConv2d":
        return cls(
            site.in_channels, site.out_channels, site.kernel_size, spec.task_dim, stride=site.stride,
            padding=site.padding, bias=site.bias, rank=spec.rank, hidden=spec.hidden,
            factorization=spec.factorization, identity=spec.identity, first_layer=site.first_layer, init=spec.init,
        )

    def modulation(self, task_embedding: Tensor) -> KernelModulation:
        """The tasks' modulation ``(J + M(v), db(v))``; ``task_embedding (T, task_dim)``."""
        return self.generator(task_embedding)

    def modulate(
        self, weight: Tensor, bias: Tensor | None, modulation: KernelModulation
    ) -> tuple[Tensor, Tensor | None]:
        """``W * (J + M(v))`` and ``b + db(v)`` (:func:`modulate_kernel`)."""
        return modulate_kernel(weight, bias, modulation)

    def forward_grouped(
        self,
        x: Tensor,
        num_tasks: int,
        modulation: KernelModulation | None,
        weight: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> Tensor:
        """As :meth:`ModulatedConv2d.forward_grouped`, through
        :func:`modulated_conv2d_grouped` (which honours ``per_task_conv("shared")``)."""
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        return modulated_conv2d_grouped(x, weight, bias, modulation, num_tasks, self.stride, self.padding)

    @staticmethod
    def statistics(parts: list[KernelModulation]) -> dict:
        """``|W_hat / W - 1|`` (``|M|`` with ``J``) and ``|db(v)|``, with their spreads across
        tasks."""
        m = torch.cat([p.scale for p in parts]) - 1.0  # how far each kernel element is from the plain conv
        stats = {"kind": "kml", "m_abs_mean": float(m.abs().mean()), "m_task_spread": _spread(m)}
        if parts[0].shift is not None:
            shift = torch.cat([p.shift for p in parts])
            stats.update(db_abs_mean=float(shift.abs().mean()), db_task_spread=_spread(shift))
        return stats

    @staticmethod
    def summary(stats: dict) -> str:
        return f"{stats['m_abs_mean']:.3f} ({stats['m_task_spread']:.3f})"

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
        if gen.init != "default":
            text += f", init={gen.init!r}"
        return text


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
                    ConvSite(width, out_channels, kernel_size, first_layer=(i == 0)),
                    ModulationSpec(name="kml", task_dim=task_dim, factorization=factorization),
                )
                total += count_parameters(gen)
                width = out_channels
        counts[factorization] = total
    return counts
