"""Whole meta-training iterations captured in one CUDA graph: a benchmark candidate.

:class:`kml.engine.graphs.GraphedStep` (what training uses) captures the forward and
backward of an iteration; episode sampling, the optimiser step and the bookkeeping
between iterations still run eagerly, one kernel launch at a time, with the host
waiting on nothing but launching everything. :class:`WholeIterations` captures
``iterations`` complete iterations (sampling on the device, forward, backward, Adam
step) back to back in one graph, so a replay runs that many meta-iterations with a
single launch. The algorithm is unchanged: each captured iteration draws new tasks
(the device generator's offset advances with every replay) and steps the optimiser.

It measures what launch overhead outside the forward and backward costs. It is not a
training path: the learning rate is fixed inside the graph (no schedule), metrics are
not read out per iteration, and tasks come from one mode without rotations.
"""

from __future__ import annotations

import torch

from kml.data.episodes import OUTPUT_CHANNELS, ModeData, draw_tasks, episode_labels, gather_tasks
from kml.data.imaging import PIXEL_SCALE
from kml.learners import MetaLearner

__all__ = ["WholeIterations"]


class WholeIterations:
    """``iterations`` meta-training iterations of ``learner`` as one CUDA graph.

    Args:
        learner: the meta-learner, on a CUDA device.
        mode: the images to draw tasks from (one mode, on the learner's device).
        episode, meta_batch_size: the episodes' ``(ways, shots, queries)`` and ``T``, the tasks per
            iteration.
        optimizer_kwargs: extra arguments of ``torch.optim.Adam`` (e.g. ``fused=True``);
            ``capturable=True`` is added (an optimiser step inside a graph needs it).
        iterations: iterations per graph.
        vectorized: vectorised tasks or the per-task loop.
        warmup: eager iterations before capture (lazy initialisation, optimiser state,
            cuDNN autotuning).

    Each call replays the graph (``iterations`` meta-iterations) and returns the static
    loss of the last one.
    """

    def __init__(self, learner: MetaLearner, mode: ModeData, episode: tuple[int, int, int], meta_batch_size: int,
                 optimizer_kwargs: dict | None = None, iterations: int = 10, vectorized: bool = True,
                 lr: float = 1e-3, warmup: int = 3) -> None:
        device = next(learner.parameters()).device
        if device.type != "cuda":
            raise ValueError("whole-iteration CUDA graphs need a learner on a CUDA device")
        self.learner, self.mode = learner, mode
        ways, shots, queries = episode
        self.ways, self.shots, self.queries, self.tasks = ways, shots, queries, meta_batch_size
        self.iterations, self.vectorized = iterations, vectorized
        kwargs = {**(optimizer_kwargs or {}), "capturable": True}
        self.optimizer = torch.optim.Adam(learner.parameters(), lr=lr, **kwargs)
        # the default CUDA generator: graph capture tracks its offset by itself
        self.generator = torch.cuda.default_generators[device.index or 0]
        counts = mode.counts.cpu()
        self.count_range = (int(counts.min()), int(counts.max()))
        self.support_labels = episode_labels(meta_batch_size, ways, shots, device)
        self.query_labels = episode_labels(meta_batch_size, ways, queries, device)
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._iteration()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            for _ in range(iterations):
                self.loss = self._iteration()

    def _sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Support ``(T, N*K, 3, H, W)`` and query ``(T, N*Q, 3, H, W)`` in [0, 1], drawn on
        the device with no host synchronisation."""
        draw = draw_tasks(self.mode.counts, self.tasks, self.ways, self.shots + self.queries, self.generator,
                          count_range=self.count_range)
        parts = []
        for images in gather_tasks(self.mode, draw, self.shots):
            parts.append(images.expand(-1, -1, OUTPUT_CHANNELS, -1, -1).float().mul_(PIXEL_SCALE))
        return parts[0], parts[1]

    def _iteration(self) -> torch.Tensor:
        support, query = self._sample()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.learner(support, self.support_labels, query, self.query_labels, ways=self.ways,
                           vectorized=self.vectorized)
        loss = out.task_losses.sum() / self.tasks
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        return self.loss
