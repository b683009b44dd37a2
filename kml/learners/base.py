"""The common learner interface: a meta-batch of tasks in, query loss and accuracy out."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from kml.nets import Conv4, LayerModulation, Modulator, TaskEncoder

__all__ = ["LearnerOutput", "MetaLearner"]


@dataclass
class LearnerOutput:
    """What a learner returns for a meta-batch of ``T`` tasks.

    Attributes:
        loss: scalar, mean over tasks of each task's mean query cross-entropy;
            differentiable w.r.t. every meta-parameter.
        task_losses: ``(T,)`` per-task query losses.
        accuracy: ``(T,)`` per-task query accuracy in ``[0, 1]``.
        logits: ``(T, N*Q, N)`` query logits.
        task_embedding: ``(T, task_dim)`` for modulated learners, else ``None``.
    """

    loss: Tensor
    task_losses: Tensor
    accuracy: Tensor
    logits: Tensor
    task_embedding: Tensor | None

    @staticmethod
    def from_logits(logits: Tensor, labels: Tensor, task_embedding: Tensor | None) -> "LearnerOutput":
        """Build the output from query ``logits (T, M, N)`` and ``labels (T, M)``."""
        num_tasks, num_query, ways = logits.shape
        per_example = F.cross_entropy(logits.reshape(-1, ways), labels.reshape(-1), reduction="none")
        task_losses = per_example.reshape(num_tasks, num_query).mean(dim=1)
        accuracy = (logits.argmax(dim=-1) == labels).to(logits.dtype).mean(dim=1)
        return LearnerOutput(task_losses.mean(), task_losses, accuracy, logits, task_embedding)

    @staticmethod
    def concatenate(outputs: list["LearnerOutput"]) -> "LearnerOutput":
        """Join the outputs of task subsets (the per-task loop path)."""
        task_losses = torch.cat([o.task_losses for o in outputs])
        embeddings = [o.task_embedding for o in outputs]
        return LearnerOutput(
            loss=task_losses.mean(),
            task_losses=task_losses,
            accuracy=torch.cat([o.accuracy for o in outputs]),
            logits=torch.cat([o.logits for o in outputs]),
            task_embedding=None if embeddings[0] is None else torch.cat(embeddings),
        )


class MetaLearner(nn.Module, abc.ABC):
    """Base class of MAML and ProtoNet, with optional task-aware modulation.

    Holds the ``backbone`` (:class:`~kml.nets.Conv4`) and, for modulated methods
    (MMAML, MMAML+KML, MProtoNet, MProtoNet+KML), the task ``encoder`` and the
    per-layer ``modulator``. The task embedding is computed from the support set
    only and modulates the backbone for both support and query.

    ``forward(support, support_labels, query, query_labels)`` takes

    - ``support (T, N*K, C, H, W)``, ``support_labels (T, N*K)`` in ``0..N-1``,
    - ``query (T, N*Q, C, H, W)``, ``query_labels (T, N*Q)``,

    and returns a :class:`LearnerOutput`. With ``vectorized=True`` (default) the
    ``T`` tasks run as one batched computation; ``vectorized=False`` is the plain
    per-task loop, kept as the reference the batched path must agree with.
    """

    def __init__(
        self,
        backbone: Conv4,
        encoder: TaskEncoder | None = None,
        modulator: Modulator | None = None,
    ) -> None:
        super().__init__()
        if (encoder is None) != (modulator is None):
            raise ValueError("a modulated learner needs both a task encoder and a modulator")
        self.backbone = backbone
        self.encoder = encoder
        self.modulator = modulator

    @property
    def modulation(self) -> str:
        """``"none"``, ``"film"`` or ``"kml"``."""
        return "none" if self.modulator is None else self.modulator.kind

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def modulation_parameters(self) -> list[nn.Parameter]:
        """Parameters of the task encoder and the generators (empty when unmodulated)."""
        if self.encoder is None:
            return []
        return list(self.encoder.parameters()) + list(self.modulator.parameters())

    def modulate(self, support: Tensor) -> tuple[Tensor | None, list[LayerModulation] | None]:
        """Task embedding ``(T, task_dim)`` and per-block modulation from ``support``."""
        if self.encoder is None:
            return None, None
        task_embedding = self.encoder(support)
        return task_embedding, self.modulator(task_embedding)

    def forward(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        query_labels: Tensor,
        ways: int | None = None,
        vectorized: bool = True,
    ) -> LearnerOutput:
        if support.dim() != 5 or query.dim() != 5:
            raise ValueError(
                "support and query must be (T, N*K, C, H, W) and (T, N*Q, C, H, W); "
                f"got {tuple(support.shape)} and {tuple(query.shape)}"
            )
        if ways is None:
            ways = self.default_ways(support_labels)
        if vectorized:
            return self.run_tasks(support, support_labels, query, query_labels, ways, batched=True)
        outputs = [
            self.run_tasks(
                support[t : t + 1], support_labels[t : t + 1], query[t : t + 1], query_labels[t : t + 1],
                ways, batched=False,
            )
            for t in range(support.shape[0])
        ]
        return LearnerOutput.concatenate(outputs)

    def default_ways(self, support_labels: Tensor) -> int:
        return int(support_labels.max().item()) + 1

    @abc.abstractmethod
    def run_tasks(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        query_labels: Tensor,
        ways: int,
        batched: bool,
    ) -> LearnerOutput:
        """Run the tasks of ``support``/``query``; ``batched=False`` means one task with
        plain (task-dimension-free) parameters: the loop reference path."""
