"""CUDA checks (skipped without a GPU): batched == loop on the GPU, device-side
sampling, bf16 autocast close to fp32, and a whole tiny run on CUDA."""

from __future__ import annotations

import pytest
import torch

from fixtures_engine import TINY
from helpers import perturb, tiny_episode
from kml.learners import build_learner

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("learner,modulation", [(l, m) for l in ("maml", "protonet") for m in ("none", "film", "kml")])
def test_batched_equals_loop_on_cuda(learner, modulation):
    torch.manual_seed(0)
    net = build_learner(learner, modulation, channels=(8, 16, 16, 16), image_size=20, task_dim=8, ways=3,
                        inner_steps=2, inner_lr=0.1).double().cuda()
    if modulation != "none":
        perturb(net.modulator, 0.2)
    episode = [t.cuda() for t in tiny_episode(tasks=4, ways=3, shots=2, queries=3, size=20, dtype=torch.float64)]
    params = list(net.parameters())
    batched, loop = net(*episode), net(*episode, vectorized=False)
    torch.testing.assert_close(batched.loss, loop.loss, atol=1e-9, rtol=1e-7)
    for a, b in zip(torch.autograd.grad(batched.loss, params), torch.autograd.grad(loop.loss, params)):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(1)
    net = build_learner("maml", "kml", ways=5, image_size=84).cuda()
    perturb(net.modulator, 0.05)
    episode = [t.cuda() for t in tiny_episode(tasks=4, ways=5, shots=1, queries=15, size=84)]
    fp32 = net(*episode)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = net(*episode)
    assert bf16.loss.dtype == torch.float32
    assert abs(bf16.loss.item() - fp32.loss.item()) < 0.05 * fp32.loss.item()
    for p in net.parameters():
        assert p.dtype == torch.float32


def test_sampler_and_training_run_on_cuda(compose, synthetic_root, tmp_path):
    from kml.engine.runs import run_training

    cfg = compose(["learner=maml", "modulation=kml", f"data.root={synthetic_root}", *TINY, "device=cuda"])
    results = run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert results["overall"]["tasks"] == 12
    from kml.engine.builders import tasksets_for

    batch = tasksets_for(cfg, torch.device("cuda")).train.sample(3)
    assert batch.support.is_cuda and batch.query_labels.is_cuda
