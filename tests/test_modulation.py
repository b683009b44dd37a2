"""kml.modulation: kernel modulation math, FiLM, identity at init, batching, gradients, counts."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import build
from helpers import perturb as _perturb

from kml.modulation import (
    ConvSite,
    FiLM,
    KernelGenerator,
    KernelModulatedConv2d,
    ModulationSpec,
    conv4_generator_parameter_counts,
    count_parameters,
    published_factor_shape,
)


def test_identity_at_initialisation_equals_plain_conv():
    torch.manual_seed(0)
    layer = KernelModulatedConv2d(3, 16, 3, task_dim=32, stride=2, padding=1)
    plain = nn.Conv2d(3, 16, 3, stride=2, padding=1)
    plain.load_state_dict({"weight": layer.weight.detach(), "bias": layer.bias.detach()})
    x = torch.randn(4, 6, 3, 20, 20)
    v = torch.randn(4, 32) * 5.0
    out = layer(x, v)
    for t in range(4):
        torch.testing.assert_close(out[t], plain(x[t]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("factorization", ["channel", "published", "full"])
def test_no_identity_variant_also_starts_as_plain_conv(factorization):
    torch.manual_seed(1)
    layer = KernelModulatedConv2d(4, 8, 3, task_dim=10, padding=1, identity=False, factorization=factorization)
    x = torch.randn(5, 4, 9, 9)
    v = torch.randn(10)
    expected = F.conv2d(x, layer.weight, layer.bias, padding=1)
    torch.testing.assert_close(layer(x, v), expected, atol=1e-6, rtol=0)


def test_modulation_math_matches_paper_formula():
    """W_hat = W * (1 + g1 (x) g2) channel aligned, b_hat = b + g3, for rank 1."""
    torch.manual_seed(2)
    layer = KernelModulatedConv2d(3, 5, 3, task_dim=7, padding=1).double()
    _perturb(layer.generator)
    v = torch.randn(7, dtype=torch.float64)
    gen = layer.generator
    g1, g2, g3 = gen.g1(v), gen.g2(v), gen.g3(v)
    m = torch.outer(g1, g2).reshape(5, 3, 3, 3)
    # channel alignment: element (o, i, ky, kx) is g1[o] * g2[i*9 + ky*3 + kx]
    assert torch.isclose(m[4, 2, 1, 0], g1[4] * g2[2 * 9 + 1 * 3 + 0])
    w_hat = layer.weight * (1 + m)
    b_hat = layer.bias + g3
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x, v), F.conv2d(x, w_hat, b_hat, padding=1))


def test_rank_r_is_sum_of_outer_products_and_hidden_layers_are_used():
    torch.manual_seed(3)
    gen = KernelGenerator(ConvSite(2, 4, 3), ModulationSpec("kml", task_dim=6, rank=3, hidden=(11,))).double()
    _perturb(gen)
    assert isinstance(gen.g1[0], nn.Linear) and gen.g1[0].out_features == 11
    v = torch.randn(2, 6, dtype=torch.float64)
    mod = gen(v)
    for t in range(2):
        a = gen.g1(v[t]).reshape(3, 4)
        u = gen.g2(v[t]).reshape(3, 18)
        expected = 1 + sum(torch.outer(a[r], u[r]) for r in range(3)).reshape(4, 2, 3, 3)
        torch.testing.assert_close(mod.scale[t], expected)


def test_published_factor_shapes_and_reshape():
    assert published_factor_shape(3, 32, 3, first=True) == (32, 27)
    assert published_factor_shape(32, 64, 3, first=False) == (192, 96)
    assert published_factor_shape(128, 256, 3, first=False) == (768, 384)
    gen = KernelGenerator(ConvSite(32, 64, 3), ModulationSpec("kml", task_dim=8, factorization="published"))
    assert gen.factor_shape == (192, 96)
    with pytest.raises(ValueError, match="does not multiply"):
        KernelGenerator(ConvSite(32, 64, 3), ModulationSpec("kml", task_dim=8), factor_shape=(10, 10))


def test_full_generator_produces_every_element():
    torch.manual_seed(4)
    gen = KernelGenerator(ConvSite(2, 3, 3), ModulationSpec("kml", task_dim=5, factorization="full")).double()
    _perturb(gen)
    v = torch.randn(1, 5, dtype=torch.float64)
    expected = 1 + gen.full(v).reshape(1, 3, 2, 3, 3)
    torch.testing.assert_close(gen(v).scale, expected)


@pytest.mark.parametrize("factorization", ["channel", "full"])
def test_single_task_equals_batched_tasks(factorization):
    torch.manual_seed(5)
    layer = KernelModulatedConv2d(3, 6, 3, task_dim=8, stride=2, padding=1, rank=2, factorization=factorization)
    _perturb(layer.generator)
    x = torch.randn(5, 4, 3, 11, 11)
    v = torch.randn(5, 8)
    batched = layer(x, v)
    assert batched.shape == (5, 4, 6, 6, 6)
    for t in range(5):
        torch.testing.assert_close(batched[t], layer(x[t], v[t]), atol=1e-6, rtol=1e-5)


def test_batched_forward_is_one_grouped_convolution(monkeypatch):
    """T tasks must not be a Python loop of convolutions."""
    layer = KernelModulatedConv2d(3, 4, 3, task_dim=5, padding=1)
    calls = []
    real_conv = F.conv2d

    def counting_conv(*args, **kwargs):
        calls.append(kwargs.get("groups", 1))
        return real_conv(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", counting_conv)
    layer(torch.randn(7, 2, 3, 8, 8), torch.randn(7, 5))
    assert calls == [7]


def test_gradcheck_modulated_conv():
    torch.manual_seed(6)
    layer = KernelModulatedConv2d(2, 3, 3, task_dim=4, stride=2, padding=1, rank=2, hidden=(5,)).double()
    _perturb(layer.generator)
    x = torch.randn(2, 2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    params = dict(layer.named_parameters())
    names = list(params)

    def fn(x, v, *flat):
        return torch.func.functional_call(layer, dict(zip(names, flat)), (x, v))

    flat = tuple(p.detach().clone().requires_grad_(True) for p in params.values())
    assert torch.autograd.gradcheck(fn, (x, v) + flat, eps=1e-6, atol=1e-5)


def test_film_formula_and_identity_at_init():
    torch.manual_seed(7)
    film = FiLM(4, task_dim=3).double()
    x = torch.randn(2, 5, 4, 3, 3, dtype=torch.float64)
    v = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(film(x, v), x)  # identity at init
    _perturb(film)
    out = film(x, v)
    dgamma, beta = film.generator.head(v).split(4, dim=-1)
    expected = x * (1 + dgamma)[:, None, :, None, None] + beta[:, None, :, None, None]
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(film(x[1], v[1]), expected[1])


def test_shape_errors_are_explicit():
    layer = KernelModulatedConv2d(3, 4, 3, task_dim=5)
    with pytest.raises(ValueError, match=r"one task: task_embedding must be \(task_dim,\)"):
        layer(torch.randn(2, 3, 8, 8), torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"3 tasks: task_embedding must be \(3, task_dim\)"):
        layer(torch.randn(3, 2, 3, 8, 8), torch.randn(5))


def test_generator_parameter_counts_reproduce_152x():
    counts = conv4_generator_parameter_counts((32, 64, 128, 256), in_channels=3, kernel_size=3, task_dim=128)
    assert counts["full"] == 50_105_664
    assert counts["published"] == 329_595
    assert round(counts["full"] / counts["published"], 2) == 152.02
    # ours: heads of sizes (C_out, C_in*9, C_out) per layer -> 3003 outputs x 129
    assert counts["channel"] == 129 * (91 + 416 + 832 + 1664) == 387_387


def test_count_parameters_matches_module():
    gen = KernelGenerator(ConvSite(3, 32, 3, first_layer=True), ModulationSpec("kml", factorization="published"))
    assert count_parameters(gen) == 129 * (32 + 27 + 32)


def test_published_factor_sizes_of_the_standalone_layer():
    """The published code's heads: (C_out, C_in*9) for the first layer, (3*C_out, 3*C_in) after."""
    later = KernelModulatedConv2d(32, 64, 3, task_dim=128, factorization="published")
    assert later.generator.factor_shape == (192, 96)
    assert later.generator.g1[-1].out_features == 192 and later.generator.g2[-1].out_features == 96
    first = KernelModulatedConv2d(3, 32, 3, task_dim=128, factorization="published", first_layer=True)
    assert first.generator.factor_shape == (32, 27)
    assert KernelModulatedConv2d(32, 64, 3, task_dim=128).generator.factor_shape == (64, 288)  # channel-aligned
    # the heads of a published-factorised Conv-4 are the layers' own: (32, 27), (192, 96), (384, 192), (768, 384)
    from kml.nets import Conv4

    net = Conv4(modulation="kml", factorization="published")
    assert [layer.generator.factor_shape for layer in net.modulated_layers()] == [
        (32, 27), (192, 96), (384, 192), (768, 384)
    ]
    assert sum(count_parameters(layer.generator) for layer in net.modulated_layers()) == 329_595


@pytest.mark.parametrize("learner,kind", [("protonet", "kml"), ("maml", "kml"), ("protonet", "film"), ("maml", "film")])
def test_a_trained_learners_layers_are_the_public_layers(learner, kind):
    """The modulated blocks of a learner are KernelModulatedConv2d / FiLM instances, and a
    standalone layer loaded with a trained block's weights gives that block's output."""
    from helpers import tiny_episode


    torch.manual_seed(11)
    net = build(learner, kind, ways=3, channels=(4, 6, 6, 8), image_size=16, task_dim=6, inner_steps=1)
    episode = tiny_episode(tasks=2, ways=3, shots=2, size=16, seed=12)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(3):  # a few meta-training steps move every parameter off its initialisation
        optimizer.zero_grad()
        net(*episode).loss.backward()
        optimizer.step()
    layer_type = KernelModulatedConv2d if kind == "kml" else FiLM
    layers = net.backbone.modulated_layers()
    assert len(layers) == 4 and all(type(layer) is layer_type for layer in layers)
    assert any(p.abs().max() > 0 for p in layers[1].generator.parameters() if p.dim() == 2)  # off zero init

    v = net.encoder(episode[0])
    x = torch.randn(2, 5, 4, 8, 8)  # input of block 1: 4 channels
    trained = layers[1]
    if kind == "kml":
        alone = KernelModulatedConv2d(4, 6, 3, task_dim=6, stride=2, padding=1)
    else:
        alone = FiLM(6, task_dim=6)
        x = torch.randn(2, 5, 6, 8, 8)
    alone.load_state_dict(trained.state_dict())
    torch.testing.assert_close(alone(x, v), trained(x, v), atol=0, rtol=0)

    # the whole backbone is the composition of standalone public layers with its weights
    images = episode[2]
    h = images
    for block in net.backbone.blocks:
        if kind == "kml":
            conv = KernelModulatedConv2d(block.conv.in_channels, block.conv.out_channels, 3, task_dim=6,
                                         stride=2, padding=1)
            conv.load_state_dict(block.conv.state_dict())
            h = conv(h, v)
        else:
            h = torch.stack([F.conv2d(h[t], block.conv.weight, block.conv.bias, stride=2, padding=1) for t in range(2)])
        bn_weight = block.bn.weight if block.bn is not None else None
        bn_bias = block.bn.bias if block.bn is not None else None
        h = torch.stack([F.batch_norm(h[t], None, None, bn_weight, bn_bias, training=True) for t in range(2)])
        if kind == "film":
            film = FiLM(block.film.num_features, task_dim=6)
            film.load_state_dict(block.film.state_dict())
            h = film(h, v)
        h = F.relu(h)
    features = h.mean(dim=(3, 4)) if net.backbone.pool == "avg" else h.flatten(2)
    if net.backbone.head is not None:
        features = features @ net.backbone.head.weight.t() + net.backbone.head.bias
    torch.testing.assert_close(net.backbone(images, net.backbone.modulations(v)), features, atol=1e-5, rtol=1e-5)
