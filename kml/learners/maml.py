"""MAML (Finn et al., 2017), optionally with FiLM (MMAML) or kernel modulation (MMAML+KML)."""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from kml.backbone import Backbone
from kml.learners.base import MetaLearner, register_learner
from kml.nets import TaskEncoder

__all__ = ["MAML"]


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
        inner_steps: inner SGD steps (training); ``eval_inner_steps`` at evaluation
            (default: the same).
        inner_lr: inner learning rate ``alpha``.
        first_order: drop second-order terms (FOMAML).
        grad_clip: element-wise clamp of inner gradients (``None`` or 0: off).
    """

    uses_head = True
    per_task_weights = True

    def __init__(
        self,
        backbone: Backbone,
        encoder: TaskEncoder | None = None,
        inner_steps: int = 5,
        inner_lr: float = 0.05,
        first_order: bool = False,
        grad_clip: float | None = 20.0,
        eval_inner_steps: int | None = None,
    ) -> None:
        super().__init__(backbone, encoder)
        if backbone.num_classes is None:
            raise ValueError("MAML needs a backbone with a classification head (num_classes)")
        if inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {inner_steps}")
        self.inner_steps = inner_steps
        self.eval_inner_steps = inner_steps if eval_inner_steps is None else eval_inner_steps
        self.inner_lr = inner_lr
        self.first_order = first_order
        self.grad_clip = grad_clip
        self._backbone_shapes = {name: tuple(p.shape) for name, p in backbone.named_adaptable_parameters()}

    @classmethod
    def from_options(cls, backbone: Backbone, encoder: TaskEncoder | None, options: Mapping[str, Any]) -> "MAML":
        """MAML with ``options``' inner loop (``inner_steps``, ``inner_lr``, ``first_order``,
        ``grad_clip``, ``eval_inner_steps``)."""
        return cls(
            backbone,
            encoder,
            inner_steps=options["inner_steps"],
            inner_lr=options["inner_lr"],
            first_order=options["first_order"],
            grad_clip=options["grad_clip"],
            eval_inner_steps=options["eval_inner_steps"],
        )

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
