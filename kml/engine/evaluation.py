"""Evaluation on fixed, seeded test tasks: accuracy and 95% confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from kml.engine.distributed import DistributedContext
from kml.engine.numerics import autocast_for

__all__ = ["ModeEvaluation", "Validator", "summarize", "evaluate_batches", "pooled_summary"]


def summarize(accuracies: np.ndarray) -> dict:
    """``{"accuracy", "ci95", "std", "tasks"}`` in percent from per-task accuracies in [0, 1].

    ``ci95 = 1.96 * std / sqrt(tasks)`` with ``std`` the sample standard deviation
    (``ddof=1``) over *tasks*, not over meta-batches.
    """
    accuracies = np.asarray(accuracies, dtype=np.float64)
    n = int(accuracies.size)
    std = float(accuracies.std(ddof=1)) if n > 1 else 0.0
    return {
        "accuracy": 100.0 * float(accuracies.mean()),
        "ci95": 100.0 * 1.96 * std / math.sqrt(n),
        "std": 100.0 * std,
        "tasks": n,
    }


@dataclass
class ModeEvaluation:
    """Per-task results of one mode: ``accuracies (n,)``, ``losses (n,)`` and, for
    modulated learners, ``embeddings (n, task_dim)``."""

    accuracies: np.ndarray
    losses: np.ndarray
    embeddings: np.ndarray | None

    def summary(self) -> dict:
        return summarize(self.accuracies)


def pooled_summary(evaluations: Iterable[ModeEvaluation]) -> dict:
    """Summary over the tasks of every mode together (the "overall" column)."""
    return summarize(np.concatenate([e.accuracies for e in evaluations]))


@torch.no_grad()
def evaluate_batches(
    learner: torch.nn.Module,
    batches: Iterable,
    ways: int,
    vectorized: bool,
    ctx: DistributedContext | None = None,
    total: int | None = None,
    description: str = "eval",
    progress: bool = True,
    precision: str = "fp32",
) -> ModeEvaluation:
    """Run ``learner`` (in eval mode, no outer gradients) on meta-batches of tasks.

    With several ranks each rank runs its share of every meta-batch and the
    per-task results are gathered in task order.

    Args:
        batches: iterable of :class:`kml.data.EpisodeBatch`.
        total: number of tasks (progress bar only).
    """
    ctx = ctx or DistributedContext()
    was_training = learner.training
    learner.eval()
    accuracies, losses, embeddings = [], [], []
    bar = tqdm(total=total, desc=description, unit="task", disable=not (progress and ctx.is_main), leave=False)
    try:
        for batch in batches:
            part = ctx.shard(batch.support.shape[0])
            with autocast_for(precision, batch.support.device):
                out = learner(
                    batch.support[part],
                    batch.support_labels[part],
                    batch.query[part],
                    batch.query_labels[part],
                    ways=ways,
                    vectorized=vectorized,
                )
            accuracies.append(ctx.all_gather_cat(out.accuracy.double()).cpu())
            losses.append(ctx.all_gather_cat(out.task_losses.double()).cpu())
            if out.task_embedding is not None:
                emb = out.task_embedding.double()
                gathered = ctx.all_gather_cat(emb.reshape(-1)).reshape(-1, emb.shape[-1])
                embeddings.append(gathered.cpu())
            bar.update(batch.support.shape[0])
    finally:
        bar.close()
        learner.train(was_training)
    return ModeEvaluation(
        accuracies=torch.cat(accuracies).numpy(),
        losses=torch.cat(losses).numpy(),
        embeddings=torch.cat(embeddings).numpy() if embeddings else None,
    )


class Validator:
    """Validation during training: fixed, seeded tasks of the val split, the same for
    every method (task ``i`` of a mode depends only on the seed, the mode, the split
    and ``i``; see :meth:`kml.data.MixtureSampler.eval_tasks`).

    Args:
        sampler: the val split's sampler.
        modes: the modes to validate on (a Multi-* specialist: its own mode).
        tasks_per_mode, batch_size, seed: ``eval.val_tasks_per_mode``, ``eval.batch_size``,
            ``eval.seed``.
        ways, vectorized, precision: as for :func:`evaluate_batches`.
    """

    def __init__(
        self,
        sampler,
        modes: list[str],
        tasks_per_mode: int,
        batch_size: int,
        seed: int,
        ways: int,
        vectorized: bool,
        precision: str = "fp32",
        ctx: DistributedContext | None = None,
    ) -> None:
        self.sampler = sampler
        self.modes = list(modes)
        self.tasks_per_mode = int(tasks_per_mode)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.ways = int(ways)
        self.vectorized = vectorized
        self.precision = precision
        self.ctx = ctx or DistributedContext()
        #: the last call's per-task accuracies in [0, 1], ``{mode: [task 0, task 1, ...]}``
        self.task_accuracies: dict[str, list[float]] = {}

    def __call__(self, learner: torch.nn.Module) -> dict:
        """``{"accuracy", "ci95", "tasks", "per_mode": {mode: {"accuracy", "ci95", "tasks"}}}``
        in percent (``accuracy`` pools the tasks of every mode); the per-task accuracies
        are kept in :attr:`task_accuracies`."""
        evaluations = {
            mode: evaluate_batches(
                learner,
                self.sampler.eval_tasks(mode, self.tasks_per_mode, self.batch_size, self.seed),
                ways=self.ways,
                vectorized=self.vectorized,
                ctx=self.ctx,
                progress=False,
                precision=self.precision,
            )
            for mode in self.modes
        }
        overall = pooled_summary(evaluations.values())
        self.task_accuracies = {mode: [float(a) for a in ev.accuracies] for mode, ev in evaluations.items()}
        return {
            "accuracy": overall["accuracy"],
            "ci95": overall["ci95"],
            "tasks": overall["tasks"],
            "per_mode": {
                mode: {k: ev.summary()[k] for k in ("accuracy", "ci95", "tasks")} for mode, ev in evaluations.items()
            },
        }
