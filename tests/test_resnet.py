"""kml.resnet: ResNet-12, the second backbone. Batched == per-task loop (losses and
meta-gradients, float64) for MAML (second order) and ProtoNet with every modulation; a
fresh modulated ResNet-12 is the plain one; its parameter count; its one-line refusals;
and a run from the command line."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from fixtures_engine import TINY, TINY_MAML, run_script
from helpers import assert_batched_equals_loop, build, perturb, tiny_episode

from kml.config import ConfigError, validate
from kml.modulation import FiLM, KernelModulatedConv2d
from kml.resnet import ResNet12

#: a tiny ResNet-12 (16x16 images: 16 -> 8 -> 4 -> 2 -> 1) and a tiny Conv-4 task encoder
TINY_RESNET = dict(backbone="resnet12", channels=(3, 4, 4, 5), encoder_channels=(4, 4, 4, 4), image_size=16,
                   task_dim=4, ways=3)


@pytest.mark.parametrize("learner", ["maml", "protonet"])
@pytest.mark.parametrize("modulation", ["none", "film", "kml"])
def test_batched_path_equals_loop_path_loss_and_meta_gradients(learner, modulation):
    torch.manual_seed(0)
    net = build(learner, modulation, inner_steps=2, inner_lr=0.3, first_order=False, **TINY_RESNET).double()
    if modulation != "none":
        perturb(net.backbone.generator_parameters(), 0.2, seed=1)
    episode = tiny_episode(tasks=3, ways=3, shots=2, queries=2, size=16, seed=2, dtype=torch.float64)
    assert_batched_equals_loop(net, episode)


@pytest.mark.parametrize("kind,layer_type", [("kml", KernelModulatedConv2d), ("film", FiLM)])
def test_every_3x3_convolution_is_modulated_and_a_fresh_modulated_resnet_is_the_plain_one(kind, layer_type):
    torch.manual_seed(3)
    modulated = ResNet12(channels=(3, 4, 4, 5), image_size=16, num_classes=3, modulation=kind, task_dim=4).double()
    layers = modulated.modulated_layers()
    assert len(layers) == 12 and all(type(layer) is layer_type for layer in layers)
    shortcuts = [block.shortcut.conv for block in modulated.layers]
    assert all(type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) for conv in shortcuts)
    plain = ResNet12(channels=(3, 4, 4, 5), image_size=16, num_classes=3).double()
    missing, unexpected = plain.load_state_dict(modulated.state_dict(), strict=False)
    assert not missing and all(".generator." in key for key in unexpected)
    x = torch.rand(2, 4, 3, 16, 16, dtype=torch.float64)
    v = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(modulated(x, modulated.modulations(v)), plain(x), atol=1e-10, rtol=1e-10)
    perturb(modulated.generator_parameters(), 0.5)
    assert not torch.allclose(modulated(x, modulated.modulations(v)), plain(x), atol=1e-4)


def test_parameter_count_of_the_default_widths():
    """64-160-320-640: per block three 3x3 convolutions and a 1x1 shortcut, each with a
    bias and an affine BN; 12.4 M parameters, as the reference codes' ResNet-12 (whose
    convolutions have no bias)."""
    with torch.device("meta"):
        net = ResNet12()
    widths = (3, 64, 160, 320, 640)
    expected = 0
    for c_in, c_out in zip(widths, widths[1:]):
        weights = 9 * c_in * c_out + 2 * 9 * c_out * c_out + c_in * c_out
        expected += weights + 4 * c_out + 4 * 2 * c_out  # conv biases, BN scale and shift
    assert sum(p.numel() for p in net.parameters()) == expected == 12_429_056
    assert (net.feature_dim == 640
            and ResNet12(pool="flatten", image_size=84, channels=(2, 2, 2, 2)).feature_dim == 2 * 25)


def test_batched_tasks_equal_each_task_alone_and_per_task_parameters_equal_separate_networks():
    torch.manual_seed(4)
    net = ResNet12(channels=(3, 4, 4, 5), image_size=16, num_classes=3)
    x = torch.rand(3, 4, 3, 16, 16)
    out = net(x)
    for t in range(3):
        torch.testing.assert_close(out[t], net(x[t]), atol=1e-5, rtol=1e-5)
    nets = [ResNet12(channels=(3, 4, 4, 5), image_size=16, num_classes=3) for _ in range(3)]
    params = {name: torch.stack([dict(n.named_parameters())[name].detach() for n in nets])
              for name, _ in net.named_parameters()}
    stacked = net(x, params=params)
    for t in range(3):
        torch.testing.assert_close(stacked[t], nets[t](x[t]), atol=1e-5, rtol=1e-5)


def test_only_the_channel_factorization_and_four_widths_are_offered(compose):
    with pytest.raises(ValueError, match=r"ResNet-12 offers only modulation.factorization=channel, got 'published'"):
        build("protonet", "kml", factorization="published", **TINY_RESNET)
    with pytest.raises(ValueError, match="channels must list 4 widths"):
        ResNet12(channels=(4, 4, 4))
    with pytest.raises(ValueError, match="style must be one of"):
        ResNet12(style="strided")
    # the factorization is KML's: a plain or FiLM ResNet-12 ignores it (protocol=published sets it)
    validate(compose(["learner.backbone.name=resnet12", "protocol=published", "modulation=none"]))
    validate(compose(["learner.backbone.name=resnet12", "protocol=published", "modulation=film"]))
    for override, message in (
        ("modulation.factorization=full", "learner.backbone.name=resnet12: ResNet-12 offers only "
                                          "modulation.factorization=channel, got 'full'"),
        ("learner.backbone.style=strided", "learner.backbone.style='strided' is not valid; use one of: maxpool"),
        ("learner.backbone.channels=[4,4,4]", "channels must list 4 widths"),
    ):
        with pytest.raises(ConfigError, match=message):
            validate(compose(["learner.backbone.name=resnet12", override]))


def test_the_backbone_name_selects_the_backbones_own_widths_and_style(compose):
    cfg = compose(["learner=maml", "learner.backbone.name=resnet12"])
    assert list(cfg.learner.backbone.channels) == [64, 160, 320, 640] and cfg.learner.backbone.style == "maxpool"
    assert list(compose(["learner=maml"]).learner.backbone.channels) == [32, 64, 128, 256]
    unset = compose(["learner.backbone.name=resnet12", "learner.backbone.channels=null", "learner.backbone.style=null"])
    validate(unset)
    with torch.device("meta"):
        from kml.engine.from_config import build_learner_from_config

        learner = build_learner_from_config(unset)
    assert learner.backbone.channels == (64, 160, 320, 640) and learner.backbone.style == "maxpool"
    assert learner.encoder.trunk.channels == (32, 64, 128, 256)  # the task encoder stays Conv-4's


@pytest.mark.slow
def test_kml_train_trains_and_evaluates_a_resnet12(synthetic_root, tmp_path):
    run_script("train.py", f"data.root={synthetic_root}", *TINY, *TINY_MAML, "learner=maml", "modulation=kml",
               "learner.backbone.name=resnet12", "modulation.encoder_channels=[4,4,4,4]", "train.iterations=2",
               "hydra.run.dir=run", cwd=tmp_path)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["method"] == "MMAML+KML" and results["iterations"] == {"all": 2}
    assert results["config"]["learner"]["backbone"]["name"] == "resnet12"
    assert results["overall"]["tasks"] == 3 * 4
