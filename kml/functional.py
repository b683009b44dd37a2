"""Task-batched functional layers.

Every layer of the library runs ``T`` few-shot tasks at once. Activations of a
conv trunk are kept in the *grouped layout* ``(B, T*C, H, W)``: channel block
``t`` holds task ``t``. In this layout

- a convolution whose kernel is shared by all tasks is a plain convolution over
  the batch ``(B*T, C, H, W)`` (a free view of the same memory);
- a convolution with one kernel per task (MAML's adapted weights, KML's
  modulated kernels) is a single grouped convolution with ``groups=T``;
- batch normalisation with statistics per task and channel is one
  ``F.batch_norm`` call over the ``T*C`` channels;
- FiLM is a broadcast over ``(1, T*C, 1, 1)``.

Parameters may carry a leading task dimension: a conv weight is either
``(C_out, C_in, k, k)`` (shared) or ``(T, C_out, C_in, k, k)`` (per task), a bias
``(C_out,)`` or ``(T, C_out)``, a linear weight ``(N, D)`` or ``(T, N, D)``.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from kml.recipes import PER_TASK_CONVS

__all__ = [
    "tasks_to_grouped",
    "grouped_to_tasks",
    "conv2d_grouped",
    "per_task_conv",
    "current_per_task_conv",
    "PER_TASK_CONVS",
    "conv2d_factorized_mask",
    "batch_norm_grouped",
    "film_grouped",
    "global_avg_pool_grouped",
    "flatten_grouped",
    "linear_tasks",
    "TaskLinear",
]


def tasks_to_grouped(x: Tensor) -> Tensor:
    """``(T, B, C, H, W)`` -> grouped layout ``(B, T*C, H, W)``."""
    num_tasks, batch, channels, height, width = x.shape
    return x.transpose(0, 1).reshape(batch, num_tasks * channels, height, width)


def grouped_to_tasks(x: Tensor, num_tasks: int) -> Tensor:
    """Grouped layout ``(B, T*C, H, W)`` -> ``(T, B, C, H, W)``."""
    batch, tc, height, width = x.shape
    return x.reshape(batch, num_tasks, tc // num_tasks, height, width).transpose(0, 1)


def _per_task_vector(v: Tensor | None, num_tasks: int) -> Tensor | None:
    """``(C,)`` or ``(T, C)`` -> flat ``(T*C,)`` (``None`` stays ``None``)."""
    if v is None:
        return None
    if v.dim() == 1:
        v = v.unsqueeze(0).expand(num_tasks, v.shape[0])
    return v.reshape(-1)


_PER_TASK_CONV: contextvars.ContextVar[str] = contextvars.ContextVar("kml_per_task_conv", default="grouped")


@contextlib.contextmanager
def per_task_conv(formulation: str):
    """Within this context, convolutions with one kernel per task use ``formulation``:

    - ``grouped`` (default): one grouped convolution with ``groups=T`` (cuDNN's grouped
      kernels on a GPU);
    - ``channels_last``: the same grouped convolution on its input in channels-last
      (NHWC) memory order, which cuDNN's tensor-core kernels read without a layout
      transform; its output stays channels-last, so the next layer's costs nothing;
    - ``unfold``: the input's patches (``F.unfold``) times each task's kernel as one
      batched matrix product ``(T, C_out, C_in*k*k) @ (T, C_in*k*k, B*H'*W')``;
    - ``shared``: for kernel-modulated convolutions whose weight ``W`` is shared by the
      tasks and whose modulation is factorised (KML's ``channel`` and ``published``
      factorisations; the ProtoNet family), the per-task kernel ``W * (J + M_t)`` is never
      built: every task's images go through dense convolutions with the one ``W``
      (:func:`conv2d_factorized_mask`). A convolution with per-task weights (MAML's
      adapted ones) or an unfactorised modulation has no such form and raises
      ``ValueError``; convolutions whose kernel is shared run as before.

    All compute the same function (to float rounding) and are differentiable to any
    order; they differ in speed and memory only. Shared-kernel convolutions are not
    affected.
    """
    if formulation not in PER_TASK_CONVS:
        raise ValueError(f"per-task convolution {formulation!r} is not one of {', '.join(PER_TASK_CONVS)}")
    token = _PER_TASK_CONV.set(formulation)
    try:
        yield
    finally:
        _PER_TASK_CONV.reset(token)


def current_per_task_conv() -> str:
    """The formulation of per-task convolutions in force (:func:`per_task_conv`)."""
    return _PER_TASK_CONV.get()


def _conv2d_per_task_unfold(x: Tensor, weight: Tensor, bias: Tensor | None, num_tasks: int, stride: int,
                            padding: int) -> Tensor:
    """:func:`conv2d_grouped` with per-task ``weight (T, C_out, C_in, k, k)`` as unfold + bmm."""
    batch, tc, height, width = x.shape
    _, out_channels, in_channels, kh, kw = weight.shape
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (B, T*C_in*kh*kw, L), task-major
    length = cols.shape[-1]
    patch = in_channels * kh * kw
    cols = cols.view(batch, num_tasks, patch, length).permute(1, 2, 0, 3).reshape(num_tasks, patch, batch * length)
    y = torch.bmm(weight.reshape(num_tasks, out_channels, patch), cols)  # (T, C_out, B*L)
    y = y.view(num_tasks, out_channels, batch, length).permute(2, 0, 1, 3)  # (B, T, C_out, L)
    if bias is not None:
        y = y + _per_task_vector(bias, num_tasks).view(1, num_tasks, out_channels, 1)
    out_height = (height + 2 * padding - kh) // stride + 1
    out_width = (width + 2 * padding - kw) // stride + 1
    return y.reshape(batch, num_tasks * out_channels, out_height, out_width)


def conv2d_grouped(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    num_tasks: int,
    stride: int = 1,
    padding: int = 0,
) -> Tensor:
    """Convolution of ``T`` tasks in the grouped layout.

    Args:
        x: ``(B, T*C_in, H, W)``.
        weight: ``(C_out, C_in, k, k)`` shared by all tasks or ``(T, C_out, C_in, k, k)``.
        bias: ``None``, ``(C_out,)`` or ``(T, C_out)``.
        num_tasks: ``T``.

    Returns:
        ``(B, T*C_out, H', W')``. A per-task ``weight`` runs as :func:`per_task_conv`
        selects (default: one grouped convolution).
    """
    batch, tc, height, width = x.shape
    in_channels = tc // num_tasks
    if weight.dim() == 4:
        out_channels = weight.shape[0]
        shared_bias = bias if (bias is None or bias.dim() == 1) else None
        y = F.conv2d(
            x.reshape(batch * num_tasks, in_channels, height, width),
            weight,
            shared_bias,
            stride=stride,
            padding=padding,
        )
        y = y.reshape(batch, num_tasks * out_channels, y.shape[-2], y.shape[-1])
        if bias is not None and bias.dim() == 2:
            y = y + bias.reshape(1, -1, 1, 1)
        return y
    if weight.shape[0] != num_tasks:
        raise ValueError(f"per-task weight has {weight.shape[0]} tasks, input has {num_tasks}")
    formulation = _PER_TASK_CONV.get()
    if formulation == "shared":
        raise ValueError(
            "per_task_conv('shared') needs a weight shared by all tasks and a factorised kernel modulation; "
            "this convolution has per-task weights (T, C_out, C_in, k, k) (e.g. MAML's adapted ones): "
            "use grouped, channels_last or unfold"
        )
    if formulation == "unfold":
        return _conv2d_per_task_unfold(x, weight, bias, num_tasks, stride, padding)
    if formulation == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    out_channels = weight.shape[1]
    flat_weight = weight.reshape(num_tasks * out_channels, *weight.shape[2:])
    return F.conv2d(
        x,
        flat_weight,
        _per_task_vector(bias, num_tasks),
        stride=stride,
        padding=padding,
        groups=num_tasks,
    )


def _mask_terms(patches: Tensor, weight: Tensor, rows: Tensor, cols: Tensor, num_tasks: int,
                out_size: tuple[int, int]) -> Tensor:
    """``sum_{r, j} rows_{t,r,j} . (W_j @ (cols_{t,r} . patches_t_j))`` of
    :func:`conv2d_factorized_mask` as ``(B, T*C_out, H', W')``; ``patches`` ``(B, T*C_in*k*k, L)``."""
    batch, length = patches.shape[0], patches.shape[-1]
    out_channels = weight.shape[0]
    rank, u = rows.shape[1], cols.shape[-1]
    chunks = rows.shape[2] // out_channels
    # (B, T, 1, c, u, L) * (1, T, r, 1, u, 1): each task's patches scaled by each of its cols
    scaled = patches.view(batch, num_tasks, 1, chunks, u, length) * cols.view(1, num_tasks, rank, 1, u, 1)
    # block j of W as a 1x1 kernel: (c*C_out, u, 1, 1), one group per block
    blocks = weight.reshape(out_channels, chunks, u).transpose(0, 1).reshape(chunks * out_channels, u, 1, 1)
    z = F.conv2d(scaled.view(batch * num_tasks * rank, chunks * u, *out_size), blocks, groups=chunks)
    gains = rows.view(num_tasks, rank, out_channels, chunks).transpose(2, 3)  # (T, r, c, C_out)
    term = (z.reshape(batch, num_tasks, rank, chunks, out_channels, length)
            * gains.reshape(1, num_tasks, rank, chunks, out_channels, 1)).sum(dim=(2, 3))
    return term.reshape(batch, num_tasks * out_channels, *out_size)


def conv2d_factorized_mask(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    rows: Tensor,
    cols: Tensor,
    identity: bool,
    num_tasks: int,
    stride: int = 1,
    padding: int = 0,
) -> Tensor:
    """Convolution of ``T`` tasks with the per-task kernels ``W * (J + M_t)`` (or ``W * M_t``)
    of a factorised mask, computed with the one shared ``W``: no per-task kernel is built.

    The mask is ``M_t = sum_r rows[t, r] (x) cols[t, r]`` (an ``(a, u)`` outer product)
    reshaped to the kernel, as :class:`~kml.modulation.KernelGenerator` makes it. With
    ``a = c * C_out`` (``c = 1``: KML's channel-aligned factors; ``c = k``: the published
    factors after the first layer) the flattened mask is
    ``M_t[o, j*u + q] = sum_r rows[t, r, c*o + j] * cols[t, r, q]``: ``c`` channel-type
    terms on disjoint ranges of the ``C_in*k*k`` patch, so that

    ``y_t = W * x_t + sum_{r, j} rows_{t,r,j} . (W_j @ (cols_{t,r} . unfold(x_t)_j))``

    where ``W_j`` is the ``j``-th column block of ``W`` reshaped to ``(C_out, C_in*k*k)``.
    The first term is one dense convolution over the ``B*T`` images, the second ``c``
    dense 1x1 convolutions (one grouped convolution with ``groups=c``) over the scaled
    patches of ``B*T*r`` images: ``r`` (+1 with ``J``) times the work of one convolution.

    Args:
        x: ``(B, T*C_in, H, W)`` (grouped layout).
        weight: ``(C_out, C_in, k, k)``, shared by the tasks.
        bias: ``None``, ``(C_out,)`` or per task ``(T, C_out)``.
        rows: ``(T, r, a)``; cols: ``(T, r, u)`` with ``a * u = C_out*C_in*k*k`` and ``a`` a
            multiple of ``C_out``.
        identity: ``True`` for ``W * (J + M)``, ``False`` for ``W * M``.
        num_tasks: ``T``.

    Returns:
        ``(B, T*C_out, H', W')``, equal to :func:`conv2d_grouped` with the per-task kernels
        to float rounding.
    """
    _, _, height, width = x.shape
    out_channels, in_channels, kh, kw = weight.shape
    a = rows.shape[2]
    u = cols.shape[-1]
    chunks = a // out_channels
    if chunks * out_channels != a or chunks * u != in_channels * kh * kw:
        raise ValueError(
            f"factors ({a}, {u}) have no shared form for a {out_channels}x{in_channels}x{kh}x{kw} kernel: "
            f"the first factor's size must be a multiple of C_out={out_channels}"
        )
    out_size = ((height + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1)
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (B, T*C_in*k*k, L), task-major
    y = _mask_terms(patches, weight, rows, cols, num_tasks, out_size)
    if identity:
        y = conv2d_grouped(x, weight, None, num_tasks, stride, padding) + y
    if bias is not None:
        y = y + _per_task_vector(bias, num_tasks).to(y.dtype).view(1, -1, 1, 1)
    return y


def batch_norm_grouped(
    x: Tensor,
    num_tasks: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation with batch statistics per task and channel.

    Statistics are taken over ``(B, H, W)`` of each task separately, as when each
    task is run alone (transductive BN, no running statistics).

    Args:
        x: ``(B, T*C, H, W)``.
        weight: optional affine scale, ``(C,)`` or ``(T, C)``.
        bias: optional affine shift, ``(C,)`` or ``(T, C)``.
    """
    return F.batch_norm(
        x,
        None,
        None,
        _per_task_vector(weight, num_tasks),
        _per_task_vector(bias, num_tasks),
        training=True,
        momentum=0.0,
        eps=eps,
    )


def film_grouped(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Feature-wise linear modulation ``x * scale + shift`` per task and channel.

    Args:
        x: ``(B, T*C, H, W)``.
        scale: ``(T, C)``.
        shift: ``(T, C)``.
    """
    return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


def global_avg_pool_grouped(x: Tensor, num_tasks: int) -> Tensor:
    """``(B, T*C, H, W)`` -> per-task features ``(T, B, C)``."""
    batch = x.shape[0]
    return x.mean(dim=(2, 3)).reshape(batch, num_tasks, -1).transpose(0, 1)


def flatten_grouped(x: Tensor, num_tasks: int) -> Tensor:
    """``(B, T*C, H, W)`` -> per-task flattened features ``(T, B, C*H*W)``."""
    batch = x.shape[0]
    return x.reshape(batch, num_tasks, -1).transpose(0, 1)


def linear_tasks(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Per-task linear layer.

    Args:
        x: ``(T, B, D)``.
        weight: ``(N, D)`` shared or ``(T, N, D)`` per task.
        bias: ``None``, ``(N,)`` or ``(T, N)``.

    Returns:
        ``(T, B, N)``.
    """
    if weight.dim() == 2:
        y = x @ weight.t()
    else:
        y = torch.bmm(x, weight.transpose(1, 2))
    if bias is not None:
        y = y + (bias.unsqueeze(-2) if bias.dim() == 2 else bias)
    return y


class TaskLinear(nn.Linear):
    """``nn.Linear`` that also accepts per-task parameters.

    Behaves exactly like ``nn.Linear``; when its ``weight`` is swapped for a
    per-task tensor ``(T, out, in)`` (and ``bias`` for ``(T, out)``), e.g. with
    ``torch.func.functional_call``, an input ``(T, ..., in)`` is mapped task by
    task. This lets whole learners run with a different parameter vector per task
    (used by the vectorised transference analysis).
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.dim() == 2:
            return F.linear(x, self.weight, self.bias)
        num_tasks = self.weight.shape[0]
        flat = x.reshape(num_tasks, -1, x.shape[-1])
        return linear_tasks(flat, self.weight, self.bias).reshape(*x.shape[:-1], self.weight.shape[1])
