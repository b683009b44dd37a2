"""CUDA checks (skipped without a GPU): batched == loop on the GPU, device-side
sampling, bf16 autocast close to fp32, and a whole tiny run on CUDA."""

from __future__ import annotations

import pytest
import torch
from fixtures_engine import TINY, TINY_MAML
from helpers import build, perturb, tiny_episode

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("learner,modulation",
                         [(name, m) for name in ("maml", "protonet") for m in ("none", "film", "kml")])
def test_batched_equals_loop_on_cuda(learner, modulation):
    torch.manual_seed(0)
    net = build(learner, modulation, channels=(8, 16, 16, 16), image_size=20, task_dim=8, ways=3,
                        inner_steps=2, inner_lr=0.1).double().cuda()
    if modulation != "none":
        perturb(net.backbone.generator_parameters(), 0.2)
    episode = [t.cuda() for t in tiny_episode(tasks=4, ways=3, shots=2, queries=3, size=20, dtype=torch.float64)]
    params = list(net.parameters())
    batched, loop = net(*episode), net(*episode, vectorized=False)
    torch.testing.assert_close(batched.loss, loop.loss, atol=1e-9, rtol=1e-7)
    for a, b in zip(torch.autograd.grad(batched.loss, params), torch.autograd.grad(loop.loss, params)):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(1)
    net = build("maml", "kml", ways=5, image_size=84).cuda()
    perturb(net.backbone.generator_parameters(), 0.05)
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

    cfg = compose(["learner=maml", "modulation=kml", f"data.root={synthetic_root}", *TINY, *TINY_MAML, "device=cuda"])
    results = run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert results["overall"]["tasks"] == 12
    from kml.engine.from_config import tasksets_for

    batch = tasksets_for(cfg, torch.device("cuda")).train.sample(3)
    assert batch.support.is_cuda and batch.query_labels.is_cuda


def test_shared_bf16_graphed_deterministic_training_reruns_bit_identically(compose, synthetic_root, tmp_path):
    """MProtoNet+KML with the shared per-task convolution in bf16, replayed as a CUDA graph
    with deterministic algorithms: two runs end with the same parameters."""
    from kml.engine.runs import run_training

    states = []
    for name in ("a", "b"):
        cfg = compose(["learner=protonet", "modulation=kml", f"data.root={synthetic_root}", *TINY, "device=cuda",
                       "train.per_task_conv=shared", "train.precision=bf16", "train.deterministic=true"])
        run_training(cfg, tmp_path / name, log=lambda *a: None)
        states.append(torch.load(tmp_path / name / "checkpoints" / "last.pt", map_location="cpu")["model"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("learner,modulation", [("maml", "kml"), ("protonet", "kml")])
def test_graphed_step_gives_eager_gradients_on_new_batches(learner, modulation):
    """A replayed CUDA graph computes the loss and every gradient of each new meta-batch
    (not those of the batch it was captured with)."""
    from kml.engine.graphs import GraphedStep

    torch.manual_seed(0)
    net = build(learner, modulation, channels=(8, 16, 16, 16), image_size=20, task_dim=8, ways=3,
                        inner_steps=2, inner_lr=0.1).double().cuda()
    perturb(net.backbone.generator_parameters(), 0.2)
    params = [p for p in net.parameters() if p.requires_grad]

    def eager_step(episode):  # returns no tensor that keeps the eager autograd graph alive
        out = net(*episode, ways=3)
        loss = out.task_losses.sum() / 4
        return loss.detach(), out.accuracy.detach(), torch.autograd.grad(loss, params)

    graphed = GraphedStep(net, ways=3, loss_divisor=4)
    for seed in (0, 1, 2):
        episode = [t.cuda() for t in tiny_episode(tasks=4, ways=3, shots=2, queries=3, size=20, seed=seed,
                                                  dtype=torch.float64)]
        eager_loss, eager_accuracy, eager_grads = eager_step(episode)
        loss, out = graphed(*episode)
        torch.testing.assert_close(loss, eager_loss, atol=1e-9, rtol=1e-7)
        torch.testing.assert_close(out.accuracy, eager_accuracy)
        assert loss.grad_fn is None and out.task_losses.grad_fn is None
        for p, g in zip(params, eager_grads):
            torch.testing.assert_close(p.grad, g, atol=1e-7, rtol=1e-6)
    assert graphed.captures == 1
    # new shapes (more tasks): a second capture, again the eager gradients
    episode = [t.cuda() for t in tiny_episode(tasks=6, ways=3, shots=2, queries=3, size=20, seed=3,
                                              dtype=torch.float64)]
    eager_loss, _, eager_grads = eager_step(episode)
    graphed.loss_divisor = 4
    loss, _ = graphed(*episode)
    assert graphed.captures == 2
    torch.testing.assert_close(loss, eager_loss, atol=1e-9, rtol=1e-7)
    for p, g in zip(params, eager_grads):
        torch.testing.assert_close(p.grad, g, atol=1e-7, rtol=1e-6)


def test_training_with_cuda_graphs_follows_the_eager_trajectory(compose, synthetic_root, tmp_path):
    from kml.engine.runs import run_training

    states = {}
    for graphs in ("false", "true"):
        cfg = compose(["learner=maml", "modulation=kml", f"data.root={synthetic_root}", *TINY, *TINY_MAML,
                       "device=cuda", f"train.cuda_graphs={graphs}"])
        run_training(cfg, tmp_path / graphs, log=lambda *a: None)
        states[graphs] = torch.load(tmp_path / graphs / "checkpoints" / "last.pt", map_location="cpu")["model"]
    for name, value in states["false"].items():
        torch.testing.assert_close(states["true"][name], value, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("learner,formulation", [(learner, formulation) for learner in ("maml", "protonet")
                                                  for formulation in ("channels_last", "unfold", "shared")
                                                  if (learner, formulation) != ("maml", "shared")])
def test_per_task_conv_formulations_equal_grouped_on_cuda(learner, formulation):
    from kml.functional import per_task_conv

    torch.manual_seed(2)
    net = build(learner, "kml", channels=(8, 16, 16, 16), image_size=20, task_dim=8, ways=3,
                        inner_steps=2, inner_lr=0.1).double().cuda()
    perturb(net.backbone.generator_parameters(), 0.2)
    episode = [t.cuda() for t in tiny_episode(tasks=4, ways=3, shots=2, queries=3, size=20, dtype=torch.float64)]
    params = list(net.parameters())
    grouped = net(*episode)
    with per_task_conv(formulation):
        unfolded = net(*episode)
        unfolded_grads = torch.autograd.grad(unfolded.loss, params)  # second order through MAML's inner loop
    torch.testing.assert_close(unfolded.loss, grouped.loss, atol=1e-9, rtol=1e-7)
    for a, b in zip(unfolded_grads, torch.autograd.grad(grouped.loss, params)):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)


def test_whole_iteration_graph_replays_the_eager_iterations():
    """k iterations captured in one graph (sampling, forward, backward, Adam) end where k
    eager iterations from the same parameters, optimiser state and generator state end."""
    import copy

    from kml.bench.timing import BenchCase, random_sampler
    from kml.bench.whole_iterations import WholeIterations

    case = BenchCase(learner="protonet", modulation="kml", image_size=16, meta_batch_size=3, queries=3)
    device = torch.device("cuda")
    net = case.build(device)
    sampler = random_sampler(case, device)
    whole = WholeIterations(net, sampler.modes[0], (case.ways, case.shots, case.queries), case.meta_batch_size,
                            iterations=2, warmup=1)
    twin = copy.deepcopy(net)
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3, capturable=True)
    optimizer.load_state_dict(copy.deepcopy(whole.optimizer.state_dict()))  # not aliasing the graph's state
    generator = whole.generator
    state = generator.get_state()
    before = [p.detach().clone() for p in net.parameters()]
    whole()
    torch.cuda.synchronize()
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert torch.isfinite(whole.loss)
    generator.set_state(state)
    eager = copy.copy(whole)
    eager.learner, eager.optimizer = twin, optimizer
    for _ in range(2):
        loss = eager._iteration()
    torch.testing.assert_close(loss, whole.loss, atol=1e-4, rtol=1e-4)
    for a, b in zip(twin.parameters(), net.parameters()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_profile_and_memory_sections_on_cuda():
    import dataclasses

    from kml.bench.profile import profile_training
    from kml.bench.timing import BenchCase, memory_footprint

    case = BenchCase(learner="maml", modulation="kml", image_size=16, meta_batch_size=2, queries=2, inner_steps=1)
    eager = profile_training(case, torch.device("cuda"), warmup=1)
    assert eager["classes"]["convolution"]["ms"] > 0 and eager["kernel_ms"] > 0
    assert eager["phases"]["inner-loop autograd"]["ms"] > 0 and eager["phases"]["optimiser"]["ms"] > 0
    assert eager["gflop"] > 0
    assert torch.autograd.grad.__name__ == "grad"  # the phase annotations are undone
    graphed = profile_training(dataclasses.replace(case, cuda_graph=True), torch.device("cuda"), warmup=1)
    assert graphed["kernels"] > 0
    row = memory_footprint(case, torch.device("cuda"), limit=8, bisections=1)
    assert row["peak_memory_mb"] > 0 and row["largest_meta_batch"] == 8 and row["search"] == "fits at the limit (8)"
