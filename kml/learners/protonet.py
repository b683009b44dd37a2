"""Prototypical networks (Snell et al., 2017), optionally modulated (MProtoNet, MProtoNet+KML)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kml.learners.base import LearnerOutput, MetaLearner
from kml.nets import Conv4, TaskEncoder

__all__ = ["ProtoNet", "prototypes", "squared_euclidean_logits"]


def prototypes(support_features: Tensor, support_labels: Tensor, ways: int) -> Tensor:
    """Class means of the support features.

    Args:
        support_features: ``(T, N*K, D)``; support_labels: ``(T, N*K)`` in ``0..ways-1``.

    Returns:
        ``(T, ways, D)``.
    """
    one_hot = F.one_hot(support_labels, ways).to(support_features.dtype)  # (T, N*K, N)
    sums = one_hot.transpose(1, 2) @ support_features  # (T, N, D)
    return sums / one_hot.sum(dim=1).unsqueeze(-1)


def squared_euclidean_logits(query_features: Tensor, protos: Tensor) -> Tensor:
    """``-||q - p||^2`` for every query and prototype.

    Args:
        query_features: ``(T, M, D)``; protos: ``(T, N, D)``.

    Returns:
        ``(T, M, N)``.
    """
    cross = query_features @ protos.transpose(1, 2)
    q_norm = query_features.pow(2).sum(-1, keepdim=True)
    p_norm = protos.pow(2).sum(-1).unsqueeze(1)
    return 2.0 * cross - q_norm - p_norm


class ProtoNet(MetaLearner):
    """ProtoNet: classify queries by the negative squared Euclidean distance of their
    (modulated) backbone features to the class-mean prototypes of the support set.

    Args:
        backbone: :class:`~kml.nets.Conv4` without a head (``num_classes=None``), FiLM- or
            kernel-modulated for MProtoNet / MProtoNet+KML.
        encoder: the task encoder of a modulated backbone (``None`` for ProtoNet).
    """

    def __init__(
        self,
        backbone: Conv4,
        encoder: TaskEncoder | None = None,
    ) -> None:
        super().__init__(backbone, encoder)
        if backbone.num_classes is not None:
            raise ValueError("ProtoNet uses backbone features: build the backbone with num_classes=None")

    def run_tasks(self, support, support_labels, query, query_labels, ways, vectorized):
        task_embedding, modulation = self.modulate(support)
        support_features = self.backbone(support, modulation)
        query_features = self.backbone(query, modulation)
        logits = squared_euclidean_logits(query_features, prototypes(support_features, support_labels, ways))
        return LearnerOutput.from_logits(logits, query_labels, task_embedding)
