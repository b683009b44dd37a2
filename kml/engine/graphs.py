"""A meta-training step (forward + backward) captured once as a CUDA graph and replayed.

On a GPU a meta-iteration of second-order MAML is thousands of small kernels
(5 inner steps x forward, backward and double backward, per layer); at paper
settings their launch cost, not arithmetic, sets the iteration time. A CUDA graph
records the kernels of one step once and replays them with a single launch.

Only the forward and backward are captured; the optimiser and scheduler steps,
the gradient all-reduce of multi-process runs and the metric bookkeeping run
eagerly on the graph's outputs. The learner is not changed by the warm-up passes
(no optimiser step; batch norm keeps no running statistics), so a graphed run
follows the same trajectory as an eager one.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from kml.engine.numerics import autocast_for
from kml.learners import LearnerOutput, MetaLearner

__all__ = ["GraphedStep"]


class GraphedStep:
    """Forward + backward of a meta-batch as a replayed CUDA graph.

    Args:
        learner: the meta-learner, on a CUDA device; its trainable parameters'
            ``.grad`` become static tensors owned by the graph (never set them to
            ``None`` while training: optimisers must not ``zero_grad(set_to_none=True)``;
            each replay overwrites them, so no zeroing is needed).
        ways: classes per task.
        vectorized: vectorised tasks or the per-task loop inside the graph.
        loss_divisor: the meta-loss is ``task_losses.sum() / loss_divisor`` (the whole
            meta-batch size, also when this process holds a shard of it).
        precision: ``fp32`` or ``bf16`` (autocast inside the graph, with the autocast
            cache off, as graph capture requires).
        warmup: eager passes on a side stream before capture (lazy initialisation and
            cuDNN autotuning must not happen during capture).

    Capture (the first call) must not overlap a live autograd graph of the learner
    built on another stream (e.g. an eager output still referenced): drop such
    outputs first.

    Call with ``support (T, N*K, C, H, W)``, ``support_labels (T, N*K)``,
    ``query (T, N*Q, C, H, W)``, ``query_labels (T, N*Q)``; returns
    ``(loss, output)``, both static tensors overwritten by the next call. A call with
    other shapes captures a new graph.
    """

    def __init__(
        self,
        learner: MetaLearner,
        ways: int,
        vectorized: bool = True,
        loss_divisor: int | None = None,
        precision: str = "fp32",
        warmup: int = 3,
    ) -> None:
        self.learner = learner
        self.ways = ways
        self.vectorized = vectorized
        self.loss_divisor = loss_divisor
        self.precision = precision
        self.warmup = warmup
        self.params = [p for p in learner.parameters() if p.requires_grad]
        if not self.params or self.params[0].device.type != "cuda":
            raise ValueError("CUDA graphs need a learner on a CUDA device")
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[Tensor, ...] = ()
        self.grads: list[Tensor] = []
        self.loss: Tensor | None = None
        self.output: LearnerOutput | None = None
        self.captures = 0

    def _forward_backward(self) -> tuple[Tensor, LearnerOutput]:
        support, support_labels, query, query_labels = self.inputs
        with autocast_for(self.precision, support.device, cache_enabled=False):
            output = self.learner(support, support_labels, query, query_labels, ways=self.ways,
                                  vectorized=self.vectorized)
        divisor = self.loss_divisor or support.shape[0]
        loss = output.task_losses.sum() / divisor
        loss.backward()
        return loss, output

    def _capture(self, inputs: tuple[Tensor, ...]) -> None:
        self.graph = None
        self.inputs = tuple(t.detach().clone() for t in inputs)
        side = torch.cuda.Stream(device=self.inputs[0].device)
        side.wait_stream(torch.cuda.current_stream(side.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                for p in self.params:
                    p.grad = None
                self._forward_backward()
        torch.cuda.current_stream(side.device).wait_stream(side)
        for p in self.params:
            p.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, output = self._forward_backward()
        # detached: a live autograd graph would keep stream-bound AccumulateGrad nodes alive,
        # which breaks the next capture (a change of shapes)
        self.loss = loss.detach()
        self.output = LearnerOutput(
            **{f.name: None if getattr(output, f.name) is None else getattr(output, f.name).detach()
               for f in dataclasses.fields(output)}
        )
        del loss, output
        self.grads = [p.grad for p in self.params]
        if any(g is None for g in self.grads):  # a parameter the loss does not reach
            for p, g in zip(self.params, self.grads):
                if g is None:
                    p.grad = torch.zeros_like(p)
            self.grads = [p.grad for p in self.params]
        self.graph = graph
        self.captures += 1

    def __call__(self, support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor):
        inputs = (support, support_labels, query, query_labels)
        same = self.graph is not None and all(
            a.shape == b.shape and a.dtype == b.dtype for a, b in zip(inputs, self.inputs)
        )
        if not same:
            self._capture(inputs)
        for static, new in zip(self.inputs, inputs):
            static.copy_(new)
        for p, g in zip(self.params, self.grads):  # in case someone detached them
            if p.grad is not g:
                p.grad = g
        self.graph.replay()
        return self.loss, self.output
