"""Transference between few-shot tasks: how one meta-gradient step on a source
task changes the loss of a target task (KML paper, Sec. 3; Fifty et al.'s
"transference" from multi-task learning, adapted to episodic training).

For meta-parameters ``theta`` (the backbone and, for modulated methods, the task
encoder and the generators), a source task ``i`` and a target task ``j``:

1. ``L_before = L_j(Q_j; theta, S_j)``: the target's query loss after the
   learner's own use of its support set (MAML: its inner loop; ProtoNet: the
   prototypes);
2. ``theta_i = theta - alpha * grad_theta L_i(Q_i; theta, S_i)``: one plain
   gradient step on the source task's *meta*-loss (for MAML the gradient goes
   through the inner loop: second order unless the learner is first order);
3. ``L_after = L_j(Q_j; theta_i, S_j)`` and ``LR_{i->j} = L_after / L_before``.

``LR < 1`` is positive transfer (the source step helps the target), ``LR > 1``
negative transfer. With a neutral band ``b``, ``|LR - 1| <= b`` counts as
neutral (:func:`transfer_shares`).

Everything is vectorised over source tasks: every meta-parameter gets a leading
source dimension (``torch.func.functional_call`` with ``(S, *shape)`` tensors),
the ``S`` source meta-losses are summed and one ``autograd.grad`` gives each
source its own gradient (tasks do not interact), then the target is run once
per source with that source's updated parameters, again as one batched call.
Sources are processed in chunks (``chunk_size``) to bound memory. The plain
per-source loop (``vectorized=False``) is kept as the reference the batched path
must agree with.

Functions take task batches (a :class:`kml.data.EpisodeBatch` or a
``(support, support_labels, query, query_labels)`` tuple), never file paths;
``scripts/transference.py`` glues saved runs and data to them, and
:mod:`kml.analysis.transference_plots` draws the histograms and the mode-to-mode matrix.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from kml.data.episodes import EpisodeBatch
from kml.learners.base import MetaLearner

__all__ = [
    "Tasks",
    "as_tasks",
    "meta_parameters",
    "default_chunk_size",
    "source_gradients",
    "transference",
    "self_transference",
    "TransferenceResult",
    "SelfTransferenceResult",
    "TransferShares",
    "transfer_classes",
    "transfer_shares",
    "ModeMatrix",
    "mode_matrix",
    "POSITIVE",
    "NEUTRAL",
    "NEGATIVE",
    "DEFAULT_NEUTRAL",
    "DEFAULT_CHUNK_BYTES",
]

POSITIVE, NEUTRAL, NEGATIVE = 0, 1, 2
#: |LR - 1| <= this counts as neutral transfer: our choice (the paper states no band)
DEFAULT_NEUTRAL = 0.01
DEFAULT_CHUNK_BYTES = 512 * 2**20

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- tasks


#: the task-batch type of the analysis is the library's one (an alias kept for readability)
Tasks = EpisodeBatch


def as_tasks(
    batch: Any,
    modes: Sequence[str] | Tensor | None = None,
    ways: int | None = None,
    mode_names: Sequence[str] | None = None,
) -> EpisodeBatch:
    """Accept an :class:`~kml.data.EpisodeBatch`, an object with the attributes
    ``support, support_labels, query, query_labels`` (and optionally ``modes``, ``ways``)
    or a ``(support, support_labels, query, query_labels)`` tuple.

    ``modes`` (one name or index per task) and ``ways`` override the batch's; integer
    mode indices name the modes of ``mode_names`` (a sampler's ``mode_names``).
    """
    if isinstance(batch, EpisodeBatch):
        if modes is None and ways is None and mode_names is None:
            return batch
        return EpisodeBatch(
            *batch.tensors,
            modes=modes if modes is not None else batch.modes,
            ways=ways or batch.ways,
            shots=batch.shots,
            queries=batch.queries,
            mode_names=mode_names if mode_names is not None else batch.mode_names,
        )
    if all(hasattr(batch, a) for a in ("support", "support_labels", "query", "query_labels")):
        tensors = (batch.support, batch.support_labels, batch.query, batch.query_labels)
        modes = modes if modes is not None else getattr(batch, "modes", None)
        ways = ways if ways is not None else getattr(batch, "ways", None)
    elif isinstance(batch, (tuple, list)) and len(batch) == 4:
        tensors = tuple(batch)
    else:
        raise TypeError(
            "expected an EpisodeBatch or a (support, support_labels, query, query_labels) tuple, "
            f"got {type(batch).__name__}"
        )
    if isinstance(modes, str):
        raise ValueError("modes must be one name per task, not a single string")
    return EpisodeBatch(*tensors, modes=modes, ways=None if ways is None else int(ways), mode_names=mode_names)


# --------------------------------------------------------------------------- parameters and chunks


def meta_parameters(learner: MetaLearner) -> dict[str, Tensor]:
    """The meta-parameters ``theta``: every trainable parameter of the learner
    (backbone; plus task encoder and generators for modulated methods), by name."""
    return {name: p for name, p in learner.named_parameters() if p.requires_grad}


def _activation_floats_per_image(learner: MetaLearner, image_size: int) -> int:
    """Floats of the conv activations of one image through the backbone."""
    return int(learner.backbone.activation_floats(image_size))


def default_chunk_size(
    learner: MetaLearner,
    tasks: Tasks | Any | None = None,
    budget_bytes: int = DEFAULT_CHUNK_BYTES,
) -> int:
    """Sources per chunk so that one chunk's working memory stays near ``budget_bytes``.

    Per source the batched path holds about 6 copies of the meta-parameters (the
    per-source gradient, the updated parameters, the per-task modulated kernels
    of the forward passes and their gradients) and about 3 copies of the
    backbone activations of every image of the episode; MAML adds 3 backbone
    copies per inner step and runs the support images once per step. The
    episode size comes from ``tasks`` (without it, 5-way 1-shot 15-query at
    the backbone's ``image_size``). Calibrated on CPU against peak RSS for the
    Conv-4 (32, 64, 128, 256) at 32x32 and 84x84 (within about 30 %).
    """
    params = meta_parameters(learner)
    itemsize = next(iter(params.values())).element_size() if params else 4
    param_bytes = sum(p.numel() * p.element_size() for p in params.values())
    if tasks is not None:
        tasks = as_tasks(tasks)
        support, query, image_size = tasks.support.shape[1], tasks.query.shape[1], tasks.support.shape[-1]
    else:
        support, query, image_size = 5, 75, learner.backbone.image_size
    steps = int(getattr(learner, "inner_steps", 0) or 0)
    images = support + query + support * steps
    per_source = 6 * param_bytes + 3 * itemsize * images * _activation_floats_per_image(learner, image_size)
    if steps:
        backbone_bytes = sum(p.numel() * p.element_size() for p in learner.backbone.parameters())
        per_source += 3 * steps * backbone_bytes
    return max(1, int(budget_bytes // max(per_source, 1)))


@contextlib.contextmanager
def _learner_mode(learner: MetaLearner, training: bool) -> Iterator[None]:
    previous = learner.training
    learner.train(training)
    try:
        yield
    finally:
        learner.train(previous)


def _forward_kwargs(tasks: Tasks, vectorized: bool = True) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"vectorized": vectorized}
    if tasks.ways is not None:
        kwargs["ways"] = tasks.ways
    return kwargs


def source_gradients(
    learner: MetaLearner,
    sources: Tasks | Any,
    params: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Per-source meta-gradients, vectorised: ``{name: (S, *p.shape)}``, slice ``i``
    being ``grad_theta L_i(Q_i; theta, S_i)`` of source ``i``'s own meta-loss.

    Every meta-parameter is expanded to ``(S, *shape)`` and the ``S`` tasks run as
    one meta-batch through ``functional_call``; one ``autograd.grad`` of the sum of
    the task losses gives every source its own gradient. Grad mode is forced on,
    so MAML differentiates through its inner loop (second order unless
    ``first_order``). Parameters a task does not reach get a zero gradient.
    """
    sources = as_tasks(sources)
    params = meta_parameters(learner) if params is None else params
    count = len(sources)
    expanded = {
        name: p.detach().unsqueeze(0).expand(count, *p.shape).requires_grad_(True) for name, p in params.items()
    }
    with torch.enable_grad():
        out = functional_call(learner, expanded, sources.tensors, _forward_kwargs(sources))
        grads = torch.autograd.grad(out.task_losses.sum(), list(expanded.values()), allow_unused=True)
    return {
        name: torch.zeros(e.shape, dtype=e.dtype, device=e.device) if g is None else g
        for (name, e), g in zip(expanded.items(), grads)
    }


def _stepped(params: Mapping[str, Tensor], grads: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """``theta - alpha * g`` per source: ``{name: (S, *shape)}``."""
    return {name: p.detach().unsqueeze(0) - alpha * grads[name] for name, p in params.items()}


def _replicated(params: Mapping[str, Tensor], rows: int) -> dict[str, Tensor]:
    """``rows`` contiguous copies of ``theta`` (the same memory layout as stepped rows)."""
    return {name: p.detach().unsqueeze(0).expand(rows, *p.shape).clone() for name, p in params.items()}


def _pad_rows(stepped: dict[str, Tensor], params: Mapping[str, Tensor], rows: int) -> dict[str, Tensor]:
    have = next(iter(stepped.values())).shape[0]
    if have == rows:
        return stepped
    pad = _replicated(params, rows - have)
    return {name: torch.cat([value, pad[name]]) for name, value in stepped.items()}


def _losses_with(learner: MetaLearner, rows: Mapping[str, Tensor], tasks: Tasks) -> Tensor:
    """Per-row query losses of ``tasks`` (one task per row) with per-row parameters."""
    with torch.no_grad():
        return functional_call(learner, dict(rows), tasks.tensors, _forward_kwargs(tasks)).task_losses


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TransferShares:
    """Shares of positive (``LR < 1 - band``), neutral (``|LR - 1| <= band``) and
    negative (``LR > 1 + band``) transfer, in percent (they add up to 100)."""

    positive: float
    neutral: float
    negative: float
    positive_count: int
    neutral_count: int
    negative_count: int
    band: float

    @property
    def total(self) -> int:
        return self.positive_count + self.neutral_count + self.negative_count

    def as_dict(self) -> dict[str, float | int]:
        return {
            "positive": self.positive,
            "neutral": self.neutral,
            "negative": self.negative,
            "positive_count": self.positive_count,
            "neutral_count": self.neutral_count,
            "negative_count": self.negative_count,
            "total": self.total,
            "band": self.band,
        }

    def __str__(self) -> str:
        return f"positive {self.positive:.1f}% / neutral {self.neutral:.1f}% / negative {self.negative:.1f}%"


def _as_array(lr: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(lr, Tensor):
        return lr.detach().cpu().double().numpy()
    return np.asarray(lr, dtype=np.float64)


def transfer_classes(lr: Tensor | np.ndarray | Sequence[float], neutral: float = DEFAULT_NEUTRAL) -> np.ndarray:
    """Class of each LR value: :data:`POSITIVE` (``LR < 1 - neutral``), :data:`NEUTRAL`
    (``|LR - 1| <= neutral``) or :data:`NEGATIVE` (``LR > 1 + neutral``)."""
    if neutral < 0:
        raise ValueError(f"the neutral band must be >= 0, got {neutral}")
    values = _as_array(lr)
    if np.isnan(values).any():
        raise ValueError("LR values contain NaN (diverged loss?)")
    classes = np.full(values.shape, NEUTRAL, dtype=np.int64)
    classes[values < 1.0 - neutral] = POSITIVE
    classes[values > 1.0 + neutral] = NEGATIVE
    return classes


def transfer_shares(lr: Tensor | np.ndarray | Sequence[float], neutral: float = DEFAULT_NEUTRAL) -> TransferShares:
    """Shares of positive / neutral / negative transfer among all ``lr`` values."""
    classes = transfer_classes(lr, neutral).reshape(-1)
    total = classes.size
    if total == 0:
        raise ValueError("no LR values")
    counts = [int((classes == k).sum()) for k in (POSITIVE, NEUTRAL, NEGATIVE)]
    pct = [100.0 * c / total for c in counts]
    return TransferShares(*pct, *counts, band=float(neutral))


@dataclass
class TransferenceResult:
    """LR of every source onto every target.

    Attributes:
        lr: ``(S, J)`` float64, ``LR_{i->j}``.
        loss_before: ``(J,)`` target query losses with ``theta``.
        loss_after: ``(S, J)`` target query losses with ``theta_i``.
        alpha: the step size.
        source_modes, target_modes: mode name per source / target (or ``None``).
        seconds: wall time of the computation.
    """

    lr: Tensor
    loss_before: Tensor
    loss_after: Tensor
    alpha: float
    source_modes: list[str] | None = None
    target_modes: list[str] | None = None
    seconds: float = 0.0

    def shares(self, neutral: float = DEFAULT_NEUTRAL) -> TransferShares:
        return transfer_shares(self.lr, neutral)

    def matrix(self, neutral: float = DEFAULT_NEUTRAL, **kwargs: Any) -> "ModeMatrix":
        """Mode-to-mode matrix (needs ``source_modes`` and ``target_modes``)."""
        if self.source_modes is None or self.target_modes is None:
            raise ValueError("the mode-to-mode matrix needs the mode of every source and target")
        return mode_matrix(self.lr, self.source_modes, self.target_modes, neutral, **kwargs)

    def as_dict(self, neutral: float = DEFAULT_NEUTRAL) -> dict[str, Any]:
        """JSON-ready: every LR value (``lr[i][j]``), losses, modes and shares."""
        return {
            "alpha": self.alpha,
            "sources": int(self.lr.shape[0]),
            "targets": int(self.lr.shape[1]),
            "lr": self.lr.tolist(),
            "loss_before": self.loss_before.tolist(),
            "loss_after": self.loss_after.tolist(),
            "source_modes": self.source_modes,
            "target_modes": self.target_modes,
            "shares": self.shares(neutral).as_dict(),
            "seconds": self.seconds,
        }


@dataclass
class SelfTransferenceResult:
    """``LR_{i->i}`` of every task: ``lr``, ``loss_before``, ``loss_after`` are ``(T,)``."""

    lr: Tensor
    loss_before: Tensor
    loss_after: Tensor
    alpha: float
    modes: list[str] | None = None
    seconds: float = 0.0

    def shares(self, neutral: float = DEFAULT_NEUTRAL) -> TransferShares:
        return transfer_shares(self.lr, neutral)


# --------------------------------------------------------------------------- transference


def transference(
    learner: MetaLearner,
    sources: Tasks | Any,
    targets: Tasks | Any,
    alpha: float,
    *,
    chunk_size: int | None = None,
    vectorized: bool = True,
    training: bool = True,
    progress: Progress | None = None,
) -> TransferenceResult:
    """``LR_{i->j}`` of every source task ``i`` onto every target task ``j``.

    Args:
        learner: any :class:`~kml.learners.MetaLearner` (MAML / ProtoNet, +/- FiLM / KML).
        sources: ``S`` source tasks; targets: ``J`` target tasks (same ``ways``).
        alpha: step size of the plain gradient step ``theta - alpha * grad``.
        chunk_size: sources per batched computation (``None`` or 0:
            :func:`default_chunk_size`).
        vectorized: ``False`` runs the per-source loop reference.
        training: run the learner in training mode (MAML: ``inner_steps``, the
            setting its meta-gradient is trained with) or, if ``False``, in
            evaluation mode (``eval_inner_steps``). The previous mode is restored.
        progress: called as ``progress(done, S)`` after every chunk / source.

    Returns:
        :class:`TransferenceResult` with ``lr (S, J)``. Losses are computed in the
        learner's dtype; on the batched path ``L_before`` and ``L_after`` go
        through calls of the same shape, so ``alpha = 0`` gives ``LR = 1`` exactly.
    """
    sources, targets = as_tasks(sources), as_tasks(targets)
    if len(sources) == 0 or len(targets) == 0:
        raise ValueError("transference needs at least one source and one target task")
    start = time.perf_counter()
    with _learner_mode(learner, training):
        if vectorized:
            before, after = _transference_batched(learner, sources, targets, float(alpha), chunk_size, progress)
        else:
            before, after = _transference_loop(learner, sources, targets, float(alpha), progress)
    before64, after64 = before.detach().cpu().double(), after.detach().cpu().double()
    return TransferenceResult(
        lr=after64 / before64.unsqueeze(0),
        loss_before=before64,
        loss_after=after64,
        alpha=float(alpha),
        source_modes=sources.task_modes,
        target_modes=targets.task_modes,
        seconds=time.perf_counter() - start,
    )


def _transference_batched(learner, sources, targets, alpha, chunk_size, progress):
    params = meta_parameters(learner)
    num_sources = len(sources)
    rows = min(chunk_size or default_chunk_size(learner, sources), num_sources)
    single_targets = [targets.select(j) for j in range(len(targets))]
    # L_before through a call of exactly the shape of the L_after calls (rows x target)
    theta_rows = _replicated(params, rows)
    before = torch.stack([_losses_with(learner, theta_rows, t.repeat(rows))[0] for t in single_targets])
    del theta_rows
    after = torch.empty(num_sources, len(targets), dtype=before.dtype, device=before.device)
    for start, chunk in sources.chunks(rows):
        stepped = _stepped(params, source_gradients(learner, chunk, params), alpha)
        stepped = _pad_rows(stepped, params, rows)
        for j, target in enumerate(single_targets):
            after[start : start + len(chunk), j] = _losses_with(learner, stepped, target.repeat(rows))[: len(chunk)]
        del stepped
        if progress is not None:
            progress(start + len(chunk), num_sources)
    return before, after


def _transference_loop(learner, sources, targets, alpha, progress):
    """Reference path: one source at a time, plain (task-dimension-free) parameters."""
    params = meta_parameters(learner)
    names = list(params)
    single_targets = [targets.select(j) for j in range(len(targets))]
    with torch.no_grad():
        before = torch.stack(
            [learner(*t.tensors, **_forward_kwargs(t, vectorized=False)).task_losses[0] for t in single_targets]
        )
    after = torch.empty(len(sources), len(targets), dtype=before.dtype, device=before.device)
    for i in range(len(sources)):
        source = sources.select(i)
        with torch.enable_grad():
            loss = learner(*source.tensors, **_forward_kwargs(source, vectorized=False)).loss
            grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        theta_i = {
            n: params[n].detach() - (0.0 if g is None else alpha * g) for n, g in zip(names, grads)
        }
        with torch.no_grad():
            for j, target in enumerate(single_targets):
                out = functional_call(learner, theta_i, target.tensors, _forward_kwargs(target, vectorized=False))
                after[i, j] = out.task_losses[0]
        if progress is not None:
            progress(i + 1, len(sources))
    return before, after


def self_transference(
    learner: MetaLearner,
    tasks: Tasks | Any,
    alpha: float,
    *,
    chunk_size: int | None = None,
    vectorized: bool = True,
    training: bool = True,
    progress: Progress | None = None,
) -> SelfTransferenceResult:
    """``LR_{i->i}``: each task's loss after a step on its own meta-loss, over before.

    For a small ``alpha`` this is ``1 - alpha * |grad L_i|^2 / L_i + O(alpha^2)``,
    below 1 unless the gradient vanishes. Arguments as :func:`transference`.
    """
    tasks = as_tasks(tasks)
    if len(tasks) == 0:
        raise ValueError("self_transference needs at least one task")
    alpha = float(alpha)
    params = meta_parameters(learner)
    names = list(params)
    before = torch.empty(len(tasks), dtype=next(iter(params.values())).dtype)
    after = torch.empty_like(before)
    start_time = time.perf_counter()
    with _learner_mode(learner, training):
        if vectorized:
            rows = min(chunk_size or default_chunk_size(learner, tasks), len(tasks))
            for start, chunk in tasks.chunks(rows):
                stepped = _stepped(params, source_gradients(learner, chunk, params), alpha)
                n = len(chunk)
                before[start : start + n] = _losses_with(learner, _replicated(params, n), chunk).cpu()
                after[start : start + n] = _losses_with(learner, stepped, chunk).cpu()
                if progress is not None:
                    progress(start + n, len(tasks))
        else:
            for i in range(len(tasks)):
                task = tasks.select(i)
                with torch.enable_grad():
                    loss = learner(*task.tensors, **_forward_kwargs(task, vectorized=False)).loss
                    grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
                theta_i = {n: params[n].detach() - (0.0 if g is None else alpha * g) for n, g in zip(names, grads)}
                with torch.no_grad():
                    out = functional_call(learner, theta_i, task.tensors, _forward_kwargs(task, vectorized=False))
                before[i] = loss.detach().cpu()
                after[i] = out.task_losses[0].cpu()
                if progress is not None:
                    progress(i + 1, len(tasks))
    before64, after64 = before.double(), after.double()
    return SelfTransferenceResult(
        lr=after64 / before64,
        loss_before=before64,
        loss_after=after64,
        alpha=alpha,
        modes=tasks.task_modes,
        seconds=time.perf_counter() - start_time,
    )


# --------------------------------------------------------------------------- mode-to-mode matrix


@dataclass
class ModeMatrix:
    """Transference aggregated by mode: row = source mode ``A``, column = target mode ``B``.

    Attributes:
        source_modes, target_modes: row and column labels.
        mean_lr: ``(A, B)`` mean LR over all (source of mode A, target of mode B) pairs.
        positive, neutral, negative: ``(A, B)`` shares in percent (same band as
            :func:`transfer_shares`).
        counts: ``(A, B)`` number of pairs.
        band: the neutral band.
    """

    source_modes: list[str]
    target_modes: list[str]
    mean_lr: np.ndarray
    positive: np.ndarray
    neutral: np.ndarray
    negative: np.ndarray
    counts: np.ndarray
    band: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_modes": self.source_modes,
            "target_modes": self.target_modes,
            "mean_lr": self.mean_lr.tolist(),
            "positive": self.positive.tolist(),
            "neutral": self.neutral.tolist(),
            "negative": self.negative.tolist(),
            "counts": self.counts.tolist(),
            "band": self.band,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModeMatrix":
        """Inverse of :meth:`as_dict` (e.g. read back from a JSON report)."""
        return cls(
            list(data["source_modes"]),
            list(data["target_modes"]),
            *(np.asarray(data[k], dtype=np.float64) for k in ("mean_lr", "positive", "neutral", "negative")),
            counts=np.asarray(data["counts"], dtype=np.int64),
            band=float(data["band"]),
        )


def _ordered(names: Sequence[str], order: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(names))
    if order is None:
        return present
    missing = [m for m in present if m not in order]
    return [m for m in order if m in present] + missing


def mode_matrix(
    lr: Tensor | np.ndarray,
    source_modes: Sequence[str],
    target_modes: Sequence[str],
    neutral: float = DEFAULT_NEUTRAL,
    mode_order: Sequence[str] | None = None,
) -> ModeMatrix:
    """Aggregate ``lr (S, J)`` into a mode-to-mode :class:`ModeMatrix`.

    ``mode_order`` fixes the row/column order (modes absent from the data are
    dropped; modes not listed come last in order of appearance).
    """
    values = _as_array(lr)
    if values.ndim != 2 or values.shape != (len(source_modes), len(target_modes)):
        raise ValueError(
            f"lr must be (sources, targets) = ({len(source_modes)}, {len(target_modes)}), got {values.shape}"
        )
    classes = transfer_classes(values, neutral)
    rows, cols = _ordered(source_modes, mode_order), _ordered(target_modes, mode_order)
    src, tgt = np.asarray(source_modes), np.asarray(target_modes)
    shape = (len(rows), len(cols))
    mean_lr, counts = np.zeros(shape), np.zeros(shape, dtype=np.int64)
    shares = {k: np.zeros(shape) for k in (POSITIVE, NEUTRAL, NEGATIVE)}
    for a, mode_a in enumerate(rows):
        for b, mode_b in enumerate(cols):
            block = np.ix_(src == mode_a, tgt == mode_b)
            block_lr, block_classes = values[block], classes[block]
            counts[a, b] = block_lr.size
            mean_lr[a, b] = block_lr.mean()
            for k in shares:
                shares[k][a, b] = 100.0 * (block_classes == k).sum() / block_lr.size
    return ModeMatrix(
        rows, cols, mean_lr, shares[POSITIVE], shares[NEUTRAL], shares[NEGATIVE], counts, float(neutral)
    )
