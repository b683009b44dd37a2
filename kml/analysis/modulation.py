"""What a trained learner's modulation does: statistics per mode and block.

Questions a researcher asks when a modulated method does not beat its plain
counterpart: is the modulation task-dependent after training, or a constant? Are the
generators still at their zero initialisation? Does FiLM rescale (or switch off) the
features instead of adapting them? Are the bias terms inert? :func:`modulation_statistics`
answers them on a set of tasks; ``tools/modulation_diagnostics.py`` runs it on saved runs.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from kml.data.episodes import EpisodeBatch
from kml.learners.base import MetaLearner
from kml.modulation import FeatureModulation, KernelModulation

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

        - ``feature_norm``: mean L2 norm of the query features (ProtoNet) or logits (MAML)
          of the unadapted backbone with the task's modulation;
        - ``embedding``: mean and across-task spread of the task embedding (modulated only);
        - ``blocks``: per block, FiLM's ``scale`` (mean, min, share negative) and
          ``|shift|`` with their across-task spreads, or KML's ``|W_hat / W - 1|`` (``|M|``)
          and ``|db(v)|`` with theirs.
    """
    was_training = learner.training
    learner.eval()
    out: dict[str, dict] = {}
    try:
        for mode, batch in batches:
            entry = out.setdefault(mode, {"tasks": 0, "feature_norm": [], "embedding": [], "blocks": []})
            task_embedding, modulation = learner.modulate(batch.support)
            features = learner.backbone(batch.query, modulation)
            entry["tasks"] += batch.num_tasks
            entry["feature_norm"].append(features.norm(dim=-1).mean(dim=1))
            if task_embedding is not None:
                entry["embedding"].append(task_embedding)
            if modulation is not None:
                entry["blocks"].append(modulation)
        for mode, entry in out.items():
            norms = torch.cat(entry.pop("feature_norm"))
            entry["feature_norm"] = float(norms.mean())
            embeddings = entry.pop("embedding")
            blocks = entry.pop("blocks")
            if embeddings:
                v = torch.cat(embeddings)
                entry["embedding"] = {"mean": float(v.mean()), "task_spread": _spread(v)}
            if blocks:
                entry["blocks"] = [_block_statistics([b[i] for b in blocks]) for i in range(len(blocks[0]))]
    finally:
        learner.train(was_training)
    return out


def _block_statistics(parts: list) -> dict:
    first = parts[0]
    scale = torch.cat([p.scale for p in parts])
    shift = None if first.shift is None else torch.cat([p.shift for p in parts])
    if isinstance(first, FeatureModulation):
        return {
            "kind": "film",
            "scale_mean": float(scale.mean()),
            "scale_min": float(scale.min()),
            "scale_negative_share": float((scale < 0).double().mean()),
            "scale_task_spread": _spread(scale),
            "shift_abs_mean": float(shift.abs().mean()),
            "shift_task_spread": _spread(shift),
        }
    if isinstance(first, KernelModulation):
        m = scale - 1.0  # W_hat / W - 1: how far each kernel element is from the plain conv
        stats = {
            "kind": "kml",
            "m_abs_mean": float(m.abs().mean()),
            "m_task_spread": _spread(m),
        }
        if shift is not None:
            stats.update(db_abs_mean=float(shift.abs().mean()), db_task_spread=_spread(shift))
        return stats
    raise TypeError(f"unknown modulation {type(first).__name__}")


@torch.no_grad()
def bias_inertness(learner: MetaLearner, batch: EpisodeBatch) -> float:
    """The largest relative change of the query logits (in float64) when every conv bias
    and KML bias shift ``db(v)`` is set to zero: 0 up to rounding under batch-statistics
    BatchNorm. The learner is restored afterwards."""
    import copy

    probe = copy.deepcopy(learner).double().eval()
    args = [t.double() if t.is_floating_point() else t for t in batch.tensors]
    ways = batch.ways or int(batch.support_labels.max()) + 1
    with torch.enable_grad():  # MAML's inner loop needs gradients even without outer ones
        before = probe(*args, ways=ways).logits
    for block in probe.backbone.blocks:
        if block.conv.bias is not None:
            block.conv.bias.zero_()
        generator = getattr(block.conv, "generator", None)
        if generator is not None and generator.g3 is not None:
            for p in generator.g3.parameters():
                p.zero_()
    with torch.enable_grad():
        after = probe(*args, ways=ways).logits
    return float((after - before).abs().max() / before.abs().max())
