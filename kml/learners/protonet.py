"""Prototypical networks (Snell et al., 2017), optionally modulated (MProtoNet, MProtoNet+KML).

By default the learner follows the KML paper's text: the task embedding of the support
set modulates the backbone for support and query alike, prototypes are the support
class means, and support and query are normalised separately (each with its own batch
statistics). Three options reproduce the published KML code's protocol
(``docs/modulation.md``, "The published protocol"):

- ``query_modulation="query"``: the query features are modulated by the task encoder's
  embedding of the *query* images (transductive);
- ``prototype_refinement="soft"`` (one soft k-means step with the query features) or
  ``"published"`` (the published code's refinement, its indexing included);
- ``batch_norm="joint"``: support and query pass through the backbone together, so
  batch normalisation uses their joint statistics (our option, closest to the original
  ProtoNet code's training pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kml.backbone import Backbone
from kml.learners.base import LearnerOptions, MetaLearner, register_learner
from kml.nets import TaskEncoder
from kml.options import option
from kml.recipes import BATCH_NORMS, PROTOTYPE_REFINEMENTS, QUERY_MODULATIONS

__all__ = [
    "ProtoNetOptions",
    "ProtoNet",
    "prototypes",
    "squared_euclidean_logits",
    "soft_refined_prototypes",
    "published_refined_prototypes",
]


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

    Computed as ``2 q.p - |q|^2 - |p|^2``, whose terms are far larger than their sum for
    long feature vectors: under autocast (``train.precision=bf16``) it runs in float32
    with autocast off, since in bfloat16 the cancellation would leave little of the
    distances (the features themselves stay as the backbone made them).

    Args:
        query_features: ``(T, M, D)``; protos: ``(T, N, D)``.

    Returns:
        ``(T, M, N)`` (float32 under autocast).
    """
    device_type = query_features.device.type
    if torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type, enabled=False):
            return _expanded_squared_distances(query_features.float(), protos.float())
    return _expanded_squared_distances(query_features, protos)


def _expanded_squared_distances(query_features: Tensor, protos: Tensor) -> Tensor:
    """``2 q.p - |q|^2 - |p|^2``, ``(T, M, D)`` and ``(T, N, D)`` -> ``(T, M, N)``, in the
    precision the context gives (autocast included)."""
    cross = query_features @ protos.transpose(1, 2)
    q_norm = query_features.pow(2).sum(-1, keepdim=True)
    p_norm = protos.pow(2).sum(-1).unsqueeze(1)
    return 2.0 * cross - q_norm - p_norm


def _soft_assignment(query_features: Tensor, protos: Tensor) -> tuple[Tensor, Tensor]:
    """``sum_q p_qj f_q (T, N, D)`` and ``sum_q p_qj (T, N)`` with
    ``p_q = softmax_j(-||f_q - P_j||^2)``."""
    p = torch.softmax(squared_euclidean_logits(query_features, protos), dim=-1)  # (T, M, N)
    return p.transpose(1, 2) @ query_features, p.sum(dim=1)


def soft_refined_prototypes(
    support_features: Tensor, support_labels: Tensor, query_features: Tensor, ways: int
) -> Tensor:
    """One soft k-means step from the support-mean prototypes (transductive):

    ``P_j <- (sum of class j's support features + sum_q p_qj f_q) / (K_j + sum_q p_qj)``,
    ``p_q = softmax_j(-||f_q - P_j||^2)`` with ``P`` the support class means.

    Args:
        support_features: ``(T, N*K, D)``; support_labels: ``(T, N*K)``;
        query_features: ``(T, M, D)``.

    Returns:
        ``(T, ways, D)``.
    """
    one_hot = F.one_hot(support_labels, ways).to(support_features.dtype)  # (T, N*K, N)
    sums = one_hot.transpose(1, 2) @ support_features  # (T, N, D)
    counts = one_hot.sum(dim=1)  # (T, N)
    weighted, mass = _soft_assignment(query_features, sums / counts.unsqueeze(-1))
    return (sums + weighted) / (counts + mass).unsqueeze(-1)


def published_refined_prototypes(
    support_features: Tensor, support_labels: Tensor, query_features: Tensor, ways: int
) -> Tensor:
    """The prototype refinement of the published KML code, its indexing included.

    As ``Trainer._update_proto`` with the ``features_sum`` rows of ``Trainer.run``
    (``scripts/trainer.py`` of the published code): the numerator of prototype ``j``
    sums the support *rows* ``j*K .. (j+1)*K - 2`` (``K - 1`` rows, whatever their
    labels; at 1-shot none, so no support feature enters it), while the denominator
    counts ``K``:

    ``P_j <- (sum of support rows jK..(j+1)K-2 + sum_q p_qj f_q) / (K + sum_q p_qj)``,

    with ``p_q = softmax_j(-||f_q - P_j||^2)`` computed from the support-mean
    prototypes. Use :func:`soft_refined_prototypes` for the refinement as intended.

    1-shot only: there the numerator holds no support row, so the published code's
    result does not depend on which rows those are. At ``K > 1`` it does: the published
    sampler draws each support block's label at random (``ClassBalancedSampler.__iter__``
    in ``scripts/sampler.py``, ``_make_single_batch`` in ``scripts/datasets/*.py``), so the
    rows summed for prototype ``j`` usually belong to other classes, which class-major rows
    cannot reproduce; ``K > 1`` is refused.

    Args:
        support_features: ``(T, N*K, D)``, rows in class-major order (as the library's
            samplers give them); support_labels: ``(T, N*K)``;
        query_features: ``(T, M, D)``.

    Returns:
        ``(T, ways, D)``.
    """
    num_tasks, rows, dim = support_features.shape
    shots = rows // ways
    if shots * ways != rows:
        raise ValueError(f"{rows} support rows are not {ways} ways times a number of shots")
    if shots > 1:
        raise ValueError(
            f"prototype_refinement='published' reproduces the published code at 1-shot only, and this task has "
            f"{shots} shots; use 1-shot tasks, or prototype_refinement='soft' or 'none'"
        )
    class_major = torch.arange(ways, device=support_labels.device).repeat_interleave(shots)
    capturing = support_labels.is_cuda and torch.cuda.is_current_stream_capturing()
    # (a graphed training step cannot read a value back: the library's samplers give
    # class-major rows, so the check runs in every step but the captured ones)
    if not capturing and not bool((support_labels == class_major).all()):
        raise ValueError(
            "prototype_refinement='published' indexes support rows as the published code does, which needs "
            "class-major support labels [0]*K + [1]*K + ...; reorder the support set, or use 'soft'"
        )
    kept = support_features.reshape(num_tasks, ways, shots, dim)[:, :, : shots - 1].sum(dim=2)  # (T, N, D)
    weighted, mass = _soft_assignment(query_features, prototypes(support_features, support_labels, ways))
    return (kept + weighted) / (shots + mass).unsqueeze(-1)


_REFINEMENTS = {"soft": soft_refined_prototypes, "published": published_refined_prototypes}


@dataclass(frozen=True)
class ProtoNetOptions(LearnerOptions):
    """ProtoNet's protocol (``learner.*``); the defaults are the paper's text, the other
    values the published KML code's (``protocol=published``, docs/modulation.md)."""

    query_modulation: str = option(QUERY_MODULATIONS[0], "what modulates the query features: support (the paper: "
                                                         "the support set's embedding) | query (the published code: "
                                                         "the query images' own embedding)")
    prototype_refinement: str = option(PROTOTYPE_REFINEMENTS[0], "none (support class means) | soft (one soft "
                                                                 "k-means step with the query features) | published "
                                                                 "(the published code's step; 1-shot)")
    batch_norm: str = option(BATCH_NORMS[0], "separate (support and query each with their own batch statistics) "
                                             "| joint (one pass over both)")

    def __post_init__(self) -> None:
        for name, allowed in (("query_modulation", QUERY_MODULATIONS), ("prototype_refinement", PROTOTYPE_REFINEMENTS),
                              ("batch_norm", BATCH_NORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; use one of: {', '.join(allowed)}")
        if self.batch_norm == "joint" and self.query_modulation == "query":
            raise ValueError(
                "batch_norm=joint runs support and query through one modulated pass; it cannot be combined with "
                "query_modulation=query: drop one of the two"
            )


@register_learner("protonet", recipe="protonet", display_name="ProtoNet")
class ProtoNet(MetaLearner):
    """ProtoNet: classify queries by the negative squared Euclidean distance of their
    (modulated) backbone features to the class-mean prototypes of the support set.

    Args:
        backbone: a :class:`~kml.backbone.Backbone` without a head (``num_classes=None``),
            FiLM- or kernel-modulated for MProtoNet / MProtoNet+KML.
        encoder: the task encoder of a modulated backbone (``None`` for ProtoNet).
        options: the protocol (:class:`ProtoNetOptions`), or its fields as keywords
            (``ProtoNet(net, prototype_refinement="soft")``): ``query_modulation``
            (``"support"``, the paper, or ``"query"``: the published code modulates the query
            features by the embedding of the query images; no effect without an encoder),
            ``prototype_refinement`` (``"none"``, ``"soft"``: :func:`soft_refined_prototypes`,
            or ``"published"``: :func:`published_refined_prototypes`; at training and
            evaluation alike) and ``batch_norm`` (``"separate"`` or ``"joint"``: one backbone
            pass over support and query, so their joint statistics; needs
            ``query_modulation="support"``).
    """

    protocol_options = ("query_modulation", "prototype_refinement", "batch_norm")
    per_task_weights = False
    Options = ProtoNetOptions

    def __init__(self, backbone: Backbone, encoder: TaskEncoder | None = None,
                 options: ProtoNetOptions | None = None, **fields: Any) -> None:
        super().__init__(backbone, encoder, options, **fields)
        if backbone.num_classes is not None:
            raise ValueError("ProtoNet uses backbone features: build the backbone with num_classes=None")
        self.query_modulation = self.options.query_modulation
        self.prototype_refinement = self.options.prototype_refinement
        self.batch_norm = self.options.batch_norm

    def features(self, support: Tensor, query: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        """The task embedding and the support and query features under this learner's
        protocol.

        Args:
            support: ``(T, N*K, C, H, W)``; query: ``(T, M, C, H, W)``.

        Returns:
            ``task_embedding (T, task_dim)`` (``None`` unmodulated), ``support_features
            (T, N*K, D)`` and ``query_features (T, M, D)``.
        """
        task_embedding, modulation = self.modulate(support)
        if self.batch_norm == "joint":
            both = self.backbone(torch.cat([support, query], dim=1), modulation)
            return task_embedding, both[:, : support.shape[1]], both[:, support.shape[1] :]
        support_features = self.backbone(support, modulation)
        query_modulation = modulation
        if self.query_modulation == "query" and self.encoder is not None:
            query_modulation = self.modulate(query)[1]
        return task_embedding, support_features, self.backbone(query, query_modulation)

    def class_prototypes(
        self, support_features: Tensor, support_labels: Tensor, query_features: Tensor, ways: int
    ) -> Tensor:
        """``(T, ways, D)`` prototypes: the support class means, refined as
        ``prototype_refinement`` says."""
        if self.prototype_refinement == "none":
            return prototypes(support_features, support_labels, ways)
        return _REFINEMENTS[self.prototype_refinement](support_features, support_labels, query_features, ways)

    def class_logits(self, query_features: Tensor, protos: Tensor) -> Tensor:
        """The query logits ``(T, M, N)`` from ``query_features (T, M, D)`` and ``protos
        (T, N, D)``: ``-||q - p||^2`` (:func:`squared_euclidean_logits`). A variant overrides
        this (``docs/extending.md``: cosine logits)."""
        return squared_euclidean_logits(query_features, protos)

    def query_logits(self, support, support_labels, query, ways, vectorized):
        task_embedding, support_features, query_features = self.features(support, query)
        protos = self.class_prototypes(support_features, support_labels, query_features, ways)
        return self.class_logits(query_features, protos), task_embedding

    def extra_repr(self) -> str:
        options = [
            f"{name}={getattr(self, name)!r}"
            for name, default in (("query_modulation", QUERY_MODULATIONS[0]),
                                  ("prototype_refinement", PROTOTYPE_REFINEMENTS[0]),
                                  ("batch_norm", BATCH_NORMS[0]))
            if getattr(self, name) != default
        ]
        return ", ".join(options)
