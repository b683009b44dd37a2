"""What a trained learner's modulation does: statistics per mode and block.

Questions a researcher asks when a modulated method does not beat its plain
counterpart: is the modulation task-dependent after training, or a constant? Are the
generators still at their zero initialisation? Does FiLM rescale (or switch off) the
features instead of adapting them? Are the bias terms inert? :func:`modulation_statistics`
answers them on a set of tasks; ``tools/modulation_diagnostics.py`` runs it on saved runs.

Each modulation provides its own statistics (``statistics`` of its layer class,
:class:`kml.modulation.ModulatedLayer`); a modulation without them is reported as skipped.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from kml.data.episodes import EpisodeBatch
from kml.learners.base import MetaLearner
from kml.modulation import KernelGenerator, ModulatedConv2d

__all__ = ["modulation_statistics", "bias_inertness"]


def _spread(values: Tensor) -> float:
    """Mean over elements of the standard deviation across tasks (dim 0)."""
    return float(values.std(dim=0).mean()) if values.shape[0] > 1 else 0.0


@torch.no_grad()
def modulation_statistics(learner: MetaLearner, batches: Iterable[tuple[str, EpisodeBatch]]) -> dict:
    """Statistics of the learner on tasks grouped by mode.

    Args:
        learner: a trained learner (any of the six methods).
        batches: ``(mode, batch)`` pairs, e.g. from :func:`kml.data.fixed_eval_tasks`.

    Returns:
        ``{mode: {...}}`` with, for every mode:

        - ``feature_norm``: mean L2 norm of the query features (ProtoNet, under its
          protocol options) or logits (MAML) of the unadapted backbone with the task's
          modulation;
        - ``embedding``: mean and across-task spread of the task embedding (modulated only);
        - ``blocks``: per modulated layer, what its modulation reports (``statistics`` of
          its layer class): FiLM's ``scale`` (mean, min, share negative) and ``|shift|``
          with their across-task spreads, or KML's ``|W_hat / W - 1|`` (``|M|``) and
          ``|db(v)|`` with theirs;
        - ``skipped``: the modulation's name, when its layer class provides no statistics
          (no ``blocks`` then).
    """
    was_training = learner.training
    learner.eval()
    out: dict[str, dict] = {}
    try:
        for mode, batch in batches:
            entry = out.setdefault(mode, {"tasks": 0, "feature_norm": [], "embedding": [], "blocks": []})
            task_embedding, modulation = learner.modulate(batch.support)
            if hasattr(learner, "features"):  # ProtoNet: its protocol (query modulation, joint BN)
                features = learner.features(batch.support, batch.query)[2]
            else:
                features = learner.backbone(batch.query, modulation)
            entry["tasks"] += batch.num_tasks
            entry["feature_norm"].append(features.norm(dim=-1).mean(dim=1))
            if task_embedding is not None:
                entry["embedding"].append(task_embedding)
            if modulation is not None:
                entry["blocks"].append(modulation)
        for entry in out.values():
            norms = torch.cat(entry.pop("feature_norm"))
            entry["feature_norm"] = float(norms.mean())
            embeddings = entry.pop("embedding")
            blocks = entry.pop("blocks")
            if embeddings:
                v = torch.cat(embeddings)
                entry["embedding"] = {"mean": float(v.mean()), "task_spread": _spread(v)}
            if blocks:
                layers = learner.backbone.modulated_layers()
                stats = [type(layer).statistics([b[i] for b in blocks]) for i, layer in enumerate(layers)]
                if any(s is None for s in stats):
                    entry["skipped"] = learner.modulation
                else:
                    entry["blocks"] = stats
    finally:
        learner.train(was_training)
    return out


@torch.no_grad()
def bias_inertness(learner: MetaLearner, batch: EpisodeBatch) -> float:
    """The largest relative change of the query logits (in float64) when every conv bias
    of the backbone and KML bias shift ``db(v)`` is set to zero: 0 up to rounding under
    batch-statistics BatchNorm. The learner itself is left unchanged (a copy is probed)."""
    import copy

    probe = copy.deepcopy(learner).double().eval()
    args = [t.double() if t.is_floating_point() else t for t in batch.tensors]
    ways = batch.ways or int(batch.support_labels.max()) + 1
    with torch.enable_grad():  # MAML's inner loop needs gradients even without outer ones
        before = probe(*args, ways=ways).logits
    for module in probe.backbone.modules():
        if isinstance(module, (torch.nn.Conv2d, ModulatedConv2d)) and module.bias is not None:
            module.bias.zero_()
        if isinstance(module, KernelGenerator) and module.g3 is not None:
            for p in module.g3.parameters():
                p.zero_()
    with torch.enable_grad():
        after = probe(*args, ways=ways).logits
    return float((after - before).abs().max() / before.abs().max())
