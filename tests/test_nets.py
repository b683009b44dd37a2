"""kml.nets: Conv-4 backbones (plain and modulated), task encoder; batched == per task == reference."""

import pytest
import torch
import torch.nn as nn
from helpers import perturb

from kml.nets import Conv4, TaskEncoder


def reference_strided_conv4(net: Conv4) -> nn.Sequential:
    """The MMAML backbone written with plain torch.nn layers, sharing ``net``'s weights."""
    layers = []
    for block in net.blocks:
        conv = nn.Conv2d(block.conv.in_channels, block.conv.out_channels, 3, stride=2, padding=1)
        conv.load_state_dict(block.conv.state_dict())
        layers += [conv, nn.BatchNorm2d(conv.out_channels, affine=False, track_running_stats=False), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    head = nn.Linear(net.head.in_features, net.head.out_features)
    head.load_state_dict(net.head.state_dict())
    return nn.Sequential(*layers, head)


def test_strided_conv4_matches_plain_torch_reference():
    torch.manual_seed(0)
    net = Conv4(num_classes=5)
    ref = reference_strided_conv4(net)
    x = torch.rand(6, 3, 84, 84)
    torch.testing.assert_close(net(x), ref(x), atol=1e-5, rtol=1e-5)


def test_paper_shapes_and_conv_parameter_count():
    net = Conv4(num_classes=5)
    conv_params = sum(b.conv.weight.numel() + b.conv.bias.numel() for b in net.blocks)
    assert conv_params == 388_416
    assert net.feature_dim == 256
    assert Conv4(pool="flatten", image_size=84).feature_dim == 256 * 6 * 6
    classic = Conv4(channels=(32,) * 4, style="maxpool", pool="flatten", image_size=84)
    assert classic.feature_dim == 32 * 5 * 5
    assert classic(torch.rand(2, 4, 3, 84, 84)).shape == (2, 4, 800)


@pytest.mark.parametrize("style", ["strided", "maxpool"])
def test_batched_tasks_equal_each_task_alone(style):
    torch.manual_seed(1)
    net = Conv4(channels=(8, 8, 8, 8), style=style, bn_affine=True, num_classes=4, image_size=20)
    perturb(net, 0.1)
    x = torch.rand(3, 5, 3, 20, 20)
    out = net(x)
    for t in range(3):
        torch.testing.assert_close(out[t], net(x[t]), atol=1e-5, rtol=1e-5)


def test_per_task_parameters_equal_separate_networks():
    torch.manual_seed(2)
    net = Conv4(channels=(4, 4, 4, 4), num_classes=3, image_size=16)
    nets = [Conv4(channels=(4, 4, 4, 4), num_classes=3, image_size=16) for _ in range(3)]
    params = {
        name: torch.stack([dict(n.named_parameters())[name].detach() for n in nets])
        for name, _ in net.named_parameters()
    }
    x = torch.rand(3, 4, 3, 16, 16)
    out = net(x, params=params)
    for t in range(3):
        torch.testing.assert_close(out[t], nets[t](x[t]), atol=1e-5, rtol=1e-5)


def test_functional_call_swaps_parameters():
    torch.manual_seed(3)
    a = Conv4(channels=(4, 4, 4, 4), num_classes=3, image_size=16)
    b = Conv4(channels=(4, 4, 4, 4), num_classes=3, image_size=16)
    x = torch.rand(2, 3, 3, 16, 16)
    swapped = torch.func.functional_call(a, dict(b.named_parameters()), (x,))
    torch.testing.assert_close(swapped, b(x))
    assert not torch.allclose(swapped, a(x))


@pytest.mark.parametrize("kind", ["film", "kml"])
def test_modulated_backbone_is_plain_at_init_and_differs_after(kind):
    torch.manual_seed(4)
    net = Conv4(channels=(4, 8, 8, 8), num_classes=3, image_size=16, modulation=kind, task_dim=6)
    x = torch.rand(2, 3, 3, 16, 16)
    v = torch.randn(2, 6)
    torch.testing.assert_close(net(x, net.modulations(v)), net(x), atol=1e-5, rtol=0)  # 4 blocks of BN
    perturb(net.generator_parameters(), 0.5)
    assert not torch.allclose(net(x, net.modulations(v)), net(x), atol=1e-3)


def test_task_encoder_shapes_support_order_invariance_and_batching():
    torch.manual_seed(5)
    enc = TaskEncoder(channels=(4, 8, 8, 8), task_dim=7, image_size=16)
    support = torch.rand(3, 5, 3, 16, 16)
    v = enc(support)
    assert v.shape == (3, 7)
    assert (v >= 0).all()  # mean of ReLU outputs
    torch.testing.assert_close(enc(support[:, torch.randperm(5)]), v, atol=1e-6, rtol=1e-5)
    for t in range(3):
        torch.testing.assert_close(enc(support[t]), v[t], atol=1e-6, rtol=1e-5)


def test_invalid_backbone_options_are_rejected():
    with pytest.raises(ValueError, match="style"):
        Conv4(style="dilated")
    with pytest.raises(ValueError, match="pool"):
        Conv4(pool="max")
    with pytest.raises(ValueError, match="modulation"):
        Conv4(modulation="attention")
