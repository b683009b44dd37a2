"""MAML (Finn et al., 2017), optionally with FiLM (MMAML) or kernel modulation (MMAML+KML)."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from kml.backbone import Backbone
from kml.learners.base import LearnerOptions, MetaLearner, register_learner
from kml.nets import TaskEncoder
from kml.options import option

__all__ = ["MAML", "MAMLOptions"]


@dataclass(frozen=True)
class MAMLOptions(LearnerOptions):
    """MAML's inner loop (``learner.*``); the defaults are the published recipe (MMAML)."""

    inner_steps: int = option(5, "inner SGD steps on the support loss (training)")
    inner_lr: float = option(0.05, "the inner SGD step size alpha")
    first_order: bool = option(False, "drop the second-order terms (first-order MAML)")
    grad_clip: Optional[float] = option(20.0, "each inner gradient element clamped to [-grad_clip, grad_clip]; "
                                              "null or 0: off")
    eval_inner_steps: Optional[int] = option(None, "inner steps at evaluation; null: inner_steps")

    def __post_init__(self) -> None:
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps={self.inner_steps} is out of range: it must be >= 0")
        if not self.inner_lr > 0:
            raise ValueError(f"inner_lr={self.inner_lr} is out of range: it must be > 0")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ValueError(f"grad_clip={self.grad_clip} is out of range: it must be >= 0 (or null: off)")
        if self.eval_inner_steps is not None and self.eval_inner_steps < 0:
            raise ValueError(f"eval_inner_steps={self.eval_inner_steps} is out of range: it must be >= 0")


@register_learner("maml", recipe="maml", display_name="MAML")
class MAML(MetaLearner):
    """Model-agnostic meta-learning over a batch of tasks.

    The inner loop adapts the backbone's conv, BN-affine and head parameters only
    with ``inner_steps`` SGD steps of size ``inner_lr`` on the support loss, each
    gradient element clamped to ``[-grad_clip, grad_clip]`` (MMAML). The task
    embedding and the modulation are computed once from the support set and stay
    fixed during the inner loop; the encoder and generators learn from the outer
    (query) loss, through the inner loop too when ``first_order=False``.

    Vectorised path: every backbone parameter gets a leading task dimension
    (``expand``), the ``T`` support losses are summed, and one ``autograd.grad``
    gives each task its own gradient (tasks do not interact), so all tasks adapt
    in one vectorised computation with grouped convolutions.

    Args:
        backbone: a :class:`~kml.backbone.Backbone` (:class:`~kml.nets.Conv4`,
            :class:`~kml.resnet.ResNet12`, ...) with a ``num_classes``-way head (FiLM- or
            kernel-modulated for MMAML / MMAML+KML).
        encoder: the task encoder of a modulated backbone (``None`` for MAML).
        options: the inner loop (:class:`MAMLOptions`), or its fields as keywords
            (``MAML(net, inner_steps=3)``); missing ones take their defaults, the published
            recipe.
    """

    uses_head = True
    per_task_weights = True
    Options = MAMLOptions

    def __init__(self, backbone: Backbone, encoder: TaskEncoder | None = None, options: MAMLOptions | None = None,
                 **fields: Any) -> None:
        super().__init__(backbone, encoder, options, **fields)
        if backbone.num_classes is None:
            raise ValueError("MAML needs a backbone with a classification head (num_classes)")
        o = self.options
        self.inner_steps = o.inner_steps
        self.eval_inner_steps = o.inner_steps if o.eval_inner_steps is None else o.eval_inner_steps
        self.inner_lr = o.inner_lr
        self.first_order = o.first_order
        self.grad_clip = o.grad_clip
        self._backbone_shapes = {name: tuple(p.shape) for name, p in backbone.named_adaptable_parameters()}

    def default_ways(self, support_labels: Tensor) -> int:
        return self.backbone.num_classes

    def adapt(
        self,
        support: Tensor,
        support_labels: Tensor,
        modulation: list | None,
        vectorized: bool = True,
        steps: int | None = None,
    ) -> dict[str, Tensor]:
        """Inner loop: the adapted backbone parameters.

        Args:
            support: ``(T, N*K, C, H, W)``; ``support_labels``: ``(T, N*K)``.
            modulation: per-layer modulation of the ``T`` tasks (fixed in the loop).
            vectorized: give every parameter a leading ``T`` dimension (the vectorised
                path); ``False`` needs ``T == 1`` and keeps plain shapes (the loop path).
            steps: number of steps (default: training or evaluation setting).

        Returns:
            ``{name: tensor}``: shape ``(T, *p.shape)`` when vectorised, else ``p.shape``.
            Differentiable w.r.t. the meta-parameters when grad mode is on
            (second order unless ``first_order``).
        """
        num_tasks, shots_total = support_labels.shape
        if not vectorized and num_tasks != 1:
            raise ValueError("the per-task loop path (vectorized=False) runs one task at a time")
        if steps is None:
            steps = self.inner_steps if self.training else self.eval_inner_steps
        meta_grad = torch.is_grad_enabled()
        create_graph = meta_grad and not self.first_order
        with torch.enable_grad():
            fast: dict[str, Tensor] = {}
            for name, shape in self._backbone_shapes.items():
                # attribute access, so that torch.func.functional_call can swap the
                # meta-parameters, possibly for per-task ones (leading T dimension)
                p = attrgetter(name)(self.backbone)
                base = p if (meta_grad and p.requires_grad) else p.detach().requires_grad_(True)
                if vectorized and base.dim() == len(shape):
                    base = base.unsqueeze(0).expand(num_tasks, *shape)
                fast[name] = base
            for _ in range(steps):
                logits = self.backbone(support, modulation, params=fast)
                # sum over tasks of each task's mean loss: one backward gives per-task gradients
                loss = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), support_labels.reshape(-1), reduction="sum"
                ) / shots_total
                names = list(fast)
                grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=create_graph)
                updated = {}
                for name, grad in zip(names, grads):
                    if self.grad_clip:
                        grad = grad.clamp(-self.grad_clip, self.grad_clip)
                    updated[name] = fast[name] - self.inner_lr * grad
                fast = updated
        if not meta_grad:
            fast = {name: value.detach() for name, value in fast.items()}
        return fast

    def query_logits(self, support, support_labels, query, ways, vectorized):
        task_embedding, modulation = self.modulate(support)
        fast = self.adapt(support, support_labels, modulation, vectorized=vectorized)
        return self.backbone(query, modulation, params=fast), task_embedding
