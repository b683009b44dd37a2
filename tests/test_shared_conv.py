"""``train.per_task_conv=shared``: a factorised kernel modulation of one backbone weight
(the ProtoNet family with KML's channel and published factors) run as dense
convolutions with that weight, equal to the grouped convolution of the per-task kernels."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_engine import TINY
from helpers import build, perturb, tiny_episode
from reliability_support import final_parameters, same_parameters

import kml.modulation
from kml.functional import conv2d_factorized_mask, per_task_conv
from kml.modulation import KernelModulatedConv2d

#: the largest difference allowed, relative to the largest value compared (float64)
RELATIVE = 1e-10


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, what: str = "", scale: float | None = None) -> None:
    """``max |actual - expected| <= RELATIVE * scale`` (default: ``max |expected|``)."""
    scale = float(expected.detach().abs().max()) if scale is None else scale
    difference = float((actual - expected).detach().abs().max()) / max(scale, 1e-300)
    assert difference <= RELATIVE, f"{what}: relative difference {difference:.2e}"


@pytest.mark.parametrize("factorization,first_layer,identity,in_channels", [
    ("channel", False, True, 5),
    ("channel", False, False, 5),
    ("published", True, False, 3),  # the first layer's channel-aligned factors (C_out, C_in*k*k)
    ("published", False, False, 6),  # later layers: (3*C_out, 3*C_in), three channel-type terms
    ("published", False, True, 4),
])
@pytest.mark.parametrize("stride", [1, 2])
def test_shared_layer_equals_the_grouped_per_task_kernels(factorization, first_layer, identity, in_channels, stride):
    """Forward and every gradient (input, weight, bias, generators, task embedding), rank 2,
    in float64, on the library's own generators moved away from their initialisation."""
    torch.manual_seed(0)
    layer = KernelModulatedConv2d(in_channels, 6, 3, task_dim=4, stride=stride, padding=1, rank=2,
                                  factorization=factorization, identity=identity, first_layer=first_layer).double()
    perturb(layer.generator, 0.3)
    num_tasks = 3
    x = torch.randn(4, num_tasks * in_channels, 9, 9, dtype=torch.float64, requires_grad=True)
    embedding = torch.randn(num_tasks, 4, dtype=torch.float64, requires_grad=True)
    inputs = [x, embedding, *layer.parameters()]

    def run():
        y = layer.forward_grouped(x, num_tasks, layer.modulation(embedding))
        probe = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        return y, torch.autograd.grad((y * probe).sum(), inputs)

    grouped, grouped_grads = run()
    with per_task_conv("shared"):
        shared, shared_grads = run()
    assert_relative(shared, grouped, "output")
    for a, b, name in zip(shared_grads, grouped_grads, ["x", "embedding", *dict(layer.named_parameters())]):
        assert_relative(a, b, name)


def test_the_shared_form_builds_no_per_task_kernel(monkeypatch):
    """Under ``shared`` the factorised scale is never built and no grouped convolution runs."""
    import torch.nn.functional as F

    layer = KernelModulatedConv2d(3, 4, 3, task_dim=2, padding=1, rank=2)
    built, groups = [], []
    scale = kml.modulation.KernelFactors.scale
    monkeypatch.setattr(kml.modulation.KernelFactors, "scale", lambda self: built.append(1) or scale(self))
    conv = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: groups.append(k.get("groups", 1)) or conv(*a, **k))
    with per_task_conv("shared"):
        layer(torch.randn(3, 2, 3, 8, 8), torch.randn(3, 2))
    assert not built and groups and set(groups) == {1}
    layer(torch.randn(3, 2, 3, 8, 8), torch.randn(3, 2))
    assert built and groups[-1] == 3  # the grouped path: the kernels of 3 tasks, one group each


def test_factors_without_a_shared_form_are_refused():
    x, weight = torch.randn(2, 2 * 3, 6, 6), torch.randn(4, 3, 3, 3)
    rows, cols = torch.randn(2, 1, 6), torch.randn(2, 1, 18)  # 6 rows: not a multiple of C_out=4
    with pytest.raises(ValueError, match="multiple of C_out=4"):
        conv2d_factorized_mask(x, weight, None, rows, cols, True, 2, padding=1)


@pytest.mark.parametrize("factorization,identity", [("channel", False), ("published", False), ("channel", True)])
def test_mprotonet_kml_shared_equals_grouped_loss_and_meta_gradients(factorization, identity):
    torch.manual_seed(3)
    net = build("protonet", "kml", channels=(4, 6, 6, 8), image_size=16, task_dim=5, ways=3, rank=2,
                        factorization=factorization, identity=identity).double()
    perturb(net.backbone.generator_parameters(), 0.2)
    episode = tiny_episode(tasks=3, ways=3, shots=2, queries=2, size=16, dtype=torch.float64)
    params = list(net.parameters())
    grouped = net(*episode)
    grouped_grads = torch.autograd.grad(grouped.loss, params)
    with per_task_conv("shared"):
        shared = net(*episode)
        shared_grads = torch.autograd.grad(shared.loss, params)
        loop = net(*episode, vectorized=False)  # one task at a time, the same form
    assert_relative(shared.logits, grouped.logits, "logits")
    assert_relative(loop.logits, grouped.logits, "loop logits")
    # relative to the largest gradient element: the conv biases' gradients are 0 up to
    # rounding (the batch norm after each conv cancels them)
    scale = max(float(g.abs().max()) for g in grouped_grads)
    for a, b, (name, _) in zip(shared_grads, grouped_grads, net.named_parameters()):
        assert_relative(a, b, name, scale)


def test_resnet12_protonet_kml_runs_shared_too():
    torch.manual_seed(4)
    net = build("protonet", "kml", backbone="resnet12", channels=(4, 6, 6, 8), image_size=16, task_dim=5,
                        ways=3, rank=2).double()
    perturb(net.backbone.generator_parameters(), 0.2)
    episode = tiny_episode(tasks=2, ways=3, shots=1, queries=2, size=16, dtype=torch.float64)
    grouped = net(*episode)
    with per_task_conv("shared"):
        shared = net(*episode)
    assert_relative(shared.logits, grouped.logits, "logits")


@pytest.mark.parametrize("modulation", ["none", "film"])
def test_shared_changes_nothing_without_kernel_modulation(modulation):
    torch.manual_seed(5)
    net = build("protonet", modulation, channels=(4, 6, 6, 8), image_size=16, task_dim=5, ways=3)
    episode = tiny_episode(tasks=2, ways=3, shots=1, queries=2, size=16)
    params = list(net.parameters())
    grouped = net(*episode)
    with per_task_conv("shared"):
        shared = net(*episode)
    assert torch.equal(shared.logits, grouped.logits)
    for a, b in zip(torch.autograd.grad(shared.loss, params), torch.autograd.grad(grouped.loss, params)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("learner,modulation,options", [
    ("maml", "kml", {}), ("maml", "none", {}), ("protonet", "kml", {"factorization": "full"})])
def test_the_library_refuses_convolutions_without_a_shared_form(learner, modulation, options):
    net = build(learner, modulation, channels=(4, 4, 4, 4), image_size=12, task_dim=4, ways=3,
                        inner_steps=1, **options)
    with per_task_conv("shared"), pytest.raises(ValueError, match=r"per_task_conv\('shared'\) needs"):
        net(*tiny_episode(tasks=2, ways=3, size=12))


@pytest.mark.parametrize("overrides,message", [
    (["learner=maml", "modulation=kml"],
     "train.per_task_conv=shared needs one backbone weight for all tasks, but learner=maml adapts the weights per "
     "task; use train.per_task_conv=grouped, channels_last or unfold"),
    (["learner=maml", "modulation=none"], "learner=maml adapts the weights per task"),
    (["modulation=kml", "modulation.factorization=full"],
     "train.per_task_conv=shared needs a factorised kernel modulation, and modulation.factorization=full has none; "
     "use modulation.factorization=channel or published, or train.per_task_conv=grouped"),
])
def test_the_config_refuses_shared_in_one_line(compose, overrides, message):
    from kml.config import ConfigError, validate

    with pytest.raises(ConfigError) as err:
        validate(compose([*overrides, "train.per_task_conv=shared"]))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_config_takes_shared_for_the_protonet_family(compose):
    from kml.config import validate

    for accepted in (["modulation=none"], ["modulation=film"], ["modulation=kml", "modulation.factorization=published"],
                     ["modulation=kml", "learner.backbone.name=resnet12"]):
        validate(compose([*accepted, "train.per_task_conv=shared"]))


def test_shared_runs_are_bit_identical_run_to_run_and_evaluate_shared(compose, synthetic_root, tmp_path, monkeypatch):
    """Two deterministic MProtoNet+KML runs with ``shared`` end with the same parameters and
    results; training, its evaluation and ``kml-eval`` all take the shared form."""
    from kml.engine.runs import evaluate_run, run_training

    calls = []
    shared = kml.modulation.conv2d_factorized_mask
    monkeypatch.setattr(kml.modulation, "conv2d_factorized_mask", lambda *a: calls.append(1) or shared(*a))
    overrides = ["learner=protonet", "modulation=kml", "modulation.rank=2", f"data.root={synthetic_root}", *TINY,
                 "train.per_task_conv=shared", "train.deterministic=true"]
    for name in ("a", "b"):
        run_training(compose(overrides), tmp_path / name, log=lambda *a: None)
    assert same_parameters(final_parameters(tmp_path / "a"), final_parameters(tmp_path / "b"))
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("a", "b")]
    assert results[0]["per_mode"] == results[1]["per_mode"]
    trained = len(calls)
    assert trained
    again = evaluate_run(tmp_path / "a", device="cpu", progress=False, log=lambda *a: None)
    assert len(calls) > trained and again["per_mode"] == results[0]["per_mode"]

