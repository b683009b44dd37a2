"""kml.learners: batched == loop (loss and meta-gradients), MAML meta-gradient vs finite
differences, ProtoNet by hand, learning a fixed episode, inner-loop details."""

import pytest
import torch
from fixtures_engine import TINY_MODEL
from helpers import assert_batched_equals_loop, build, tiny_episode

from kml.learners import MAML, ProtoNet, build_learner, method_name

VARIANTS = [
    ("maml", "none", False),
    ("maml", "none", True),
    ("maml", "film", False),
    ("maml", "film", True),
    ("maml", "kml", False),
    ("maml", "kml", True),
    ("protonet", "none", False),
    ("protonet", "film", False),
    ("protonet", "kml", False),
]


@pytest.fixture
def make(tiny_learner):
    """The tiny learner with a 2-step inner loop of lr 0.3 (MAML), generators perturbed."""

    def build(learner, modulation, first_order=False, seed=0, **overrides):
        return tiny_learner(learner, modulation, seed=seed, **{"inner_steps": 2, "inner_lr": 0.3,
                                                               "first_order": first_order, **overrides})

    return build


@pytest.mark.parametrize("learner,modulation,first_order", VARIANTS)
def test_batched_path_equals_loop_path_loss_and_meta_gradients(learner, modulation, first_order, make):
    net = make(learner, modulation, first_order)
    episode = [t.double() if t.is_floating_point() else t for t in tiny_episode(tasks=3, ways=3, seed=1)]
    assert_batched_equals_loop(net, episode)


def _directional_fd(net, episode, direction, eps=1e-6):
    """Central difference of the meta-loss along ``direction``."""
    params = list(net.parameters())
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
    plus = net(*episode).loss.item()
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.sub_(2 * eps * d)
    minus = net(*episode).loss.item()
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
    return (plus - minus) / (2 * eps)


@pytest.mark.parametrize("modulation", ["none", "kml"])
def test_maml_second_order_meta_gradient_matches_finite_differences(modulation, make):
    # 24x24 inputs (a 2x2 last block) and 2 shots keep BN statistics away from degenerate
    # batches, where a constant channel normalises to exactly 0 and sits on ReLU's kink
    net = make("maml", modulation, first_order=False, seed=3, channels=(4, 4, 4, 4), image_size=24, inner_lr=0.05)
    episode = tiny_episode(tasks=2, ways=3, shots=2, size=24, seed=4, dtype=torch.float64)
    params = list(net.parameters())
    grads = torch.autograd.grad(net(*episode).loss, params)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        analytic = sum((gr * d).sum() for gr, d in zip(grads, direction)).item()
        numeric = _directional_fd(net, episode, direction)
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    # the second-order terms matter here: first-order MAML gives a different gradient
    net.first_order = True
    fo_grads = torch.autograd.grad(net(*episode).loss, params)
    assert max((a - b).abs().max().item() for a, b in zip(grads, fo_grads)) > 1e-4


def test_first_order_meta_gradient_is_query_gradient_at_adapted_weights(make):
    net = make("maml", "none", first_order=True, seed=6)
    support, s_labels, query, q_labels = [
        t.double() if t.is_floating_point() else t for t in tiny_episode(tasks=1, ways=3, seed=7)
    ]
    out = net(support, s_labels, query, q_labels)
    meta_grads = torch.autograd.grad(out.loss, list(net.backbone.parameters()))
    fast = {n: v.detach().requires_grad_(True) for n, v in net.adapt(support, s_labels, None, vectorized=False).items()}
    logits = net.backbone(query, params=fast)
    loss = torch.nn.functional.cross_entropy(logits[0], q_labels[0])
    expected = torch.autograd.grad(loss, list(fast.values()))
    for a, b in zip(meta_grads, expected):
        torch.testing.assert_close(a, b)


def test_protonet_logits_match_hand_computation():
    torch.manual_seed(8)
    net = build("protonet", "none", **TINY_MODEL).double()
    support, s_labels, query, q_labels = [
        t.double() if t.is_floating_point() else t for t in tiny_episode(tasks=2, ways=3, shots=2, queries=2, seed=9)
    ]
    out = net(support, s_labels, query, q_labels)
    for t in range(2):
        fs = net.backbone(support[t])
        fq = net.backbone(query[t])
        protos = [fs[s_labels[t] == c].mean(0) for c in range(3)]
        for i in range(fq.shape[0]):
            for c in range(3):
                expected = -sum((fq[i, d] - protos[c][d]) ** 2 for d in range(fq.shape[1]))
                assert out.logits[t, i, c].item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-9)
        expected_loss = torch.nn.functional.cross_entropy(out.logits[t], q_labels[t])
        assert out.task_losses[t].item() == pytest.approx(expected_loss.item(), rel=1e-12)


@pytest.mark.parametrize("learner,modulation",
                         [(name, m) for name in ("maml", "protonet") for m in ("none", "film", "kml")])
def test_learner_fits_one_fixed_episode(learner, modulation):
    torch.manual_seed(10)
    net = build(learner, modulation, channels=(8, 8, 8, 8), image_size=12, task_dim=8, ways=3,
                        inner_steps=1, inner_lr=0.1)
    episode = tiny_episode(tasks=1, ways=3, shots=1, queries=2, seed=11)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        out = net(*episode)
        first = first if first is not None else out.loss.item()
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    final = net(*episode)
    assert final.loss.item() < 0.05 < first
    assert final.accuracy.item() == 1.0


def test_inner_gradient_clamp_bounds_each_update(make):
    net = make("maml", "none", seed=12, inner_steps=3, inner_lr=0.5, grad_clip=1e-3)
    support, s_labels, _, _ = tiny_episode(tasks=2, ways=3, seed=13)
    fast = net.adapt(support.double(), s_labels, None)
    for name, p in net.backbone.named_parameters():
        moved = (fast[name] - p.unsqueeze(0)).abs().max().item()
        assert moved <= 3 * 0.5 * 1e-3 + 1e-12, name
    assert set(fast) == {n for n, _ in net.backbone.named_parameters()}  # backbone only


def test_modulation_computed_once_and_encoder_not_adapted(monkeypatch, make):
    net = make("maml", "kml", seed=14)
    calls = []
    original = net.encoder.forward
    monkeypatch.setattr(net.encoder, "forward", lambda s: calls.append(1) or original(s))
    episode = [t.double() if t.is_floating_point() else t for t in tiny_episode(tasks=2, ways=3, seed=15)]
    net(*episode)
    assert len(calls) == 1


def test_evaluation_without_grad_matches_grad_mode_and_keeps_no_graph(make):
    net = make("maml", "film", seed=16)
    net.eval()
    episode = [t.double() if t.is_floating_point() else t for t in tiny_episode(tasks=2, ways=3, seed=17)]
    with torch.no_grad():
        evaluated = net(*episode)
    assert evaluated.loss.grad_fn is None
    torch.testing.assert_close(evaluated.logits, net(*episode).logits.detach())


def test_method_names_and_wrong_heads():
    assert method_name("maml", "kml") == "MMAML+KML"
    assert method_name("protonet", "film") == "MProtoNet"
    assert method_name("maml", "none", multi=True) == "Multi-MAML"
    with pytest.raises(ValueError, match="num_classes"):
        MAML(build("protonet").backbone)
    with pytest.raises(ValueError, match="num_classes=None"):
        ProtoNet(build("maml").backbone)
    with pytest.raises(ValueError, match="learner must be one of"):
        build_learner("reptile")


@pytest.mark.parametrize("learner,modulation",
                         [("maml", "kml"), ("maml", "film"), ("protonet", "kml"), ("protonet", "none")])
def test_per_task_meta_parameters_through_functional_call(learner, modulation, make):
    """Every meta-parameter may carry a leading task dimension (one parameter vector
    per task): the batched run equals running each task with its own parameters."""
    net = make(learner, modulation, seed=18)
    episode = tiny_episode(tasks=3, ways=3, seed=19, dtype=torch.float64)
    g = torch.Generator().manual_seed(20)
    base = {n: p.detach() for n, p in net.named_parameters()}
    per_task = [{n: v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype) for n, v in base.items()}
                for _ in range(3)]
    stacked = {n: torch.stack([p[n] for p in per_task]) for n in base}
    batched = torch.func.functional_call(net, stacked, tuple(episode))
    for t in range(3):
        alone = torch.func.functional_call(net, per_task[t], tuple(x[t : t + 1] for x in episode))
        torch.testing.assert_close(alone.task_losses[0], batched.task_losses[t], atol=1e-10, rtol=1e-8)


def test_build_learner_takes_specs_and_its_options_and_kml01_keywords_still_work_with_a_warning():
    """The narrow factory: a ModulationSpec and a BackboneSpec (a spec used to fail with a
    TypeError about keywords), the learner's own options as keywords, an unknown option in one
    line listing the learner's options; kml 0.1's keywords build the same learner, warned."""
    from kml.backbone_spec import BackboneSpec
    from kml.modulation import ModulationSpec
    from kml.options import OptionError

    torch.manual_seed(0)
    new = build_learner("protonet", ModulationSpec(name="kml", rank=2, task_dim=6), 3, image_size=16,
                        backbone=BackboneSpec(channels=(4, 4, 4, 4)), batch_norm="joint")
    assert new.options.batch_norm == "joint" and new.backbone.channels == (4, 4, 4, 4)
    assert all(layer.generator.rank == 2 for layer in new.backbone.modulated_layers())
    with pytest.raises(OptionError, match=r"^learner.inner_step is not an option of learner maml; its options: "
                                          r"inner_steps, inner_lr, first_order, grad_clip, eval_inner_steps$"):
        build_learner("maml", "kml", inner_step=3)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match=r"is now build_learner\(learner, ModulationSpec\('kml', rank=..., "
                                                r"task_dim=...\), backbone=BackboneSpec\(channels=...\)"):
        old = build_learner("protonet", "kml", 3, image_size=16, rank=2, task_dim=6, channels=(4, 4, 4, 4),
                            batch_norm="joint")
    assert old.options == new.options
    for (name, a), b in zip(new.state_dict().items(), old.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(TypeError, match="pass rank in the ModulationSpec"):
        build_learner("protonet", ModulationSpec(name="kml"), rank=2)


def test_the_import_paths_of_kml_01_still_work_with_a_warning():
    import importlib
    import sys

    for old, new, name in [("kml.learners.recipes", "kml.recipes", "RECIPES"),
                           ("kml.analysis.modulation", "kml.analysis.diagnostics", "modulation_statistics")]:
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import from {new}"):
            module = importlib.import_module(old)
        assert getattr(module, name) is getattr(importlib.import_module(new), name)
