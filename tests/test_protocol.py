"""The ProtoNet family's protocol options: the paper's text (default) and the published
KML code's query modulation, prototype refinement and batch statistics."""

import pytest
import torch
import torch.nn as nn
from helpers import build, tiny_episode

from kml.config import ConfigError, validate
from kml.learners import published_refined_prototypes, soft_refined_prototypes


def _episode(seed=1, shots=1, tasks=2, ways=3, queries=2):
    """A tiny float64 episode with class-major support rows, as the library's samplers give them."""
    support, support_labels, query, query_labels = [
        t.double() if t.is_floating_point() else t
        for t in tiny_episode(tasks=tasks, ways=ways, shots=shots, queries=queries, size=16, seed=seed)]
    order = support_labels.argsort(dim=1, stable=True)
    support = torch.stack([support[t, order[t]] for t in range(tasks)])
    return support, torch.gather(support_labels, 1, order), query, query_labels


def test_soft_refinement_matches_a_float64_hand_computation():
    g = torch.Generator().manual_seed(0)
    ways, shots, queries, dim = 3, 2, 4, 5
    support = torch.randn(2, ways * shots, dim, generator=g, dtype=torch.float64)
    labels = torch.stack([torch.tensor([2, 0, 1, 0, 2, 1]), torch.tensor([0, 0, 1, 1, 2, 2])])
    query = torch.randn(2, ways * queries, dim, generator=g, dtype=torch.float64)
    got = soft_refined_prototypes(support, labels, query, ways)
    for t in range(2):
        means = [support[t][labels[t] == j].mean(0) for j in range(ways)]
        expected = []
        for j in range(ways):
            numerator = support[t][labels[t] == j].sum(0)
            mass = 0.0
            for q in query[t]:
                d = torch.stack([-((q - m) ** 2).sum() for m in means])
                p = torch.exp(d - d.max()) / torch.exp(d - d.max()).sum()
                numerator = numerator + p[j] * q
                mass = mass + p[j]
            expected.append(numerator / (shots + mass))
        torch.testing.assert_close(got[t], torch.stack(expected), rtol=1e-12, atol=1e-12)


def test_published_refinement_leaves_the_support_out_at_one_shot_and_refuses_more_shots():
    g = torch.Generator().manual_seed(1)
    ways, queries, dim = 3, 2, 4
    query = torch.randn(1, ways * queries, dim, generator=g, dtype=torch.float64)
    # 1-shot: no support feature enters the numerator; moving the support features
    # changes the prototypes only through the soft assignment p (computed from them)
    support = torch.randn(1, ways, dim, generator=g, dtype=torch.float64)
    labels = torch.arange(ways).unsqueeze(0)
    protos = published_refined_prototypes(support, labels, query, ways)
    p = torch.softmax(-torch.cdist(query[0], support[0]) ** 2, dim=-1)
    expected = (p.T @ query[0]) / (1 + p.sum(0)).unsqueeze(-1)
    torch.testing.assert_close(protos[0], expected, rtol=1e-12, atol=1e-12)
    # K > 1: the published code sums rows of randomly labelled support blocks, which
    # class-major rows cannot reproduce
    support = torch.randn(1, ways * 3, dim, generator=g, dtype=torch.float64)
    with pytest.raises(ValueError, match="1-shot only, and this task has 3 shots") as err:
        published_refined_prototypes(support, torch.arange(ways).repeat_interleave(3).unsqueeze(0), query, ways)
    assert "\n" not in str(err.value)


def _query_modulation(net, support, query):
    """The modulation the query features get (the last block's kernel factor)."""
    captured = []
    forward = net.backbone.forward

    def spy(x, modulation=None, params=None):
        captured.append(modulation)
        return forward(x, modulation, params)

    net.backbone.forward = spy
    try:
        net.features(support, query)
    finally:
        del net.backbone.forward
    return captured[-1][-1].scale


@pytest.mark.parametrize("query_modulation", ["support", "query"])
def test_query_modulation_follows_the_query_images_only_when_asked(query_modulation, tiny_learner):
    net = tiny_learner("protonet", "kml", query_modulation=query_modulation)
    support, _, query, _ = _episode()
    other_query = _episode(seed=7)[2]
    with torch.no_grad():
        first = _query_modulation(net, support, query)
        second = _query_modulation(net, support, other_query)
        support_side = net.backbone.modulations(net.encoder(support))[-1].scale
    if query_modulation == "query":
        assert (first - second).abs().max() > 1e-6
        torch.testing.assert_close(first, net.backbone.modulations(net.encoder(query))[-1].scale.detach())
    else:
        torch.testing.assert_close(first, second)
        torch.testing.assert_close(first, support_side)


@pytest.mark.parametrize("batch_norm", ["separate", "joint"])
def test_joint_batch_norm_makes_support_features_depend_on_the_query(batch_norm, tiny_learner):
    net = tiny_learner("protonet", "kml", batch_norm=batch_norm)
    support, _, query, _ = _episode()
    other_query = _episode(seed=7)[2]
    with torch.no_grad():
        a = net.features(support, query)[1]
        b = net.features(support, other_query)[1]
    if batch_norm == "joint":
        assert (a - b).abs().max() > 1e-6
    else:
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("options", [
    {"query_modulation": "query"},
    {"prototype_refinement": "soft"},
    {"prototype_refinement": "published"},
    {"batch_norm": "joint"},
])
def test_protocol_options_keep_the_batched_path_equal_to_the_loop(options, tiny_learner):
    net = tiny_learner("protonet", "kml", **options)
    episode = _episode(shots=1 if options.get("prototype_refinement") == "published" else 2, tasks=3)
    batched, loop = net(*episode), net(*episode, vectorized=False)
    torch.testing.assert_close(batched.logits, loop.logits, rtol=1e-9, atol=1e-9)
    reference = tiny_learner("protonet", "kml")(*episode)
    assert (batched.logits - reference.logits).abs().max() > 1e-6  # the option changes the result


def test_protocol_published_sets_the_published_codes_options(compose):
    cfg = compose(["protocol=published"])
    validate(cfg)
    assert cfg.protocol.name == "published"
    assert (cfg.learner.query_modulation, cfg.learner.prototype_refinement, cfg.learner.batch_norm) == (
        "query", "published", "separate")
    assert (cfg.modulation.identity, cfg.modulation.factorization, cfg.modulation.init) == (
        False, "published", "published")
    paper = compose([])
    assert paper.protocol.name == "paper"
    assert (paper.learner.query_modulation, paper.learner.prototype_refinement, paper.learner.batch_norm) == (
        "support", "none", "separate")
    assert (paper.modulation.identity, paper.modulation.factorization, paper.modulation.init) == (
        True, "channel", "default")


@pytest.mark.parametrize("overrides,message", [
    (["learner=maml", "protocol=published"], "ProtoNet family only"),
    (["learner=maml", "learner.prototype_refinement=soft"],
     "learner.prototype_refinement is an option of learner protonet, not of maml; use learner=protonet"),
    (["experiment=paper/2mode_maml", "learner.prototype_refinement=soft"],  # the experiment's learner
     "learner.prototype_refinement is an option of learner protonet, not of maml"),
    (["learner.batch_norm=joint", "learner.query_modulation=query"], "cannot be combined"),
    (["learner.prototype_refinement=hard"], "learner.prototype_refinement='hard' is not valid"),
    # a run recorded as protocol=published follows every option of it
    (["protocol=published", "learner.prototype_refinement=none"],
     "protocol=published sets learner.prototype_refinement=published, but this run has "
     "learner.prototype_refinement=none; drop that override"),
    (["protocol=published", "modulation.identity=true"], "sets modulation.identity=false, but this run has "
                                                         "modulation.identity=true"),
    (["protocol=published", "modulation.init=default"], "sets modulation.init=published, but this run has "
                                                        "modulation.init=default"),
    (["modulation.init=published"], "modulation.init='published' is the published code's start of W \\* M and "
                                    "needs identity=false"),
    (["learner.prototype_refinement=published", "episode.shots=5"],
     "learner.prototype_refinement=published reproduces the published code at 1-shot only"),
])
def test_protocol_misuse_is_refused_in_one_line(overrides, message):
    """Refused as ``kml-train`` refuses it: while composing (a key the learner does not
    have) or by the validation of the composed config."""
    from kml.config.compose import compose_run_config
    from kml.errors import KmlError

    with pytest.raises(KmlError, match=message) as err:
        validate(compose_run_config(overrides))
    assert "\n" not in str(err.value)


def test_published_refinement_refuses_support_rows_out_of_class_order():
    features = torch.randn(1, 3, 4, dtype=torch.float64)
    query = torch.randn(1, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="class-major support labels"):
        published_refined_prototypes(features, torch.tensor([[1, 0, 2]]), query, 3)
    published_refined_prototypes(features, torch.tensor([[0, 1, 2]]), query, 3)


# ------------------------------------------------------------------ the published initialisation
def test_published_init_starts_the_mask_as_default_linear_heads_and_the_encoder_as_default_convs():
    """``init="published"``: after the same seed, the first layer's mask is ``g1(v) g2(v)^T`` of
    ``nn.Linear`` heads built in the same order at PyTorch's default init (``W * M``, no
    ``1 +``), and the task encoder's convolutions are ``nn.Conv2d`` layers built in order."""
    from kml.nets import TaskEncoder

    task_dim, channels = 6, (4, 6, 6, 8)
    torch.manual_seed(3)
    net = build("protonet", "kml", ways=3, image_size=16, channels=channels, task_dim=task_dim,
                        identity=False, factorization="published", init="published")
    torch.manual_seed(3)  # the first layer's heads are the first modules drawn: g1, g2, g3
    a, u = channels[0], 3 * 3 * 3  # published factors of the first layer: (C_out, C_in*k*k)
    g1, g2, g3 = nn.Linear(task_dim, a), nn.Linear(task_dim, u), nn.Linear(task_dim, channels[0])
    v = torch.randn(2, task_dim)
    first = net.backbone.blocks[0].conv
    modulation = first.modulation(v)
    expected = torch.einsum("ta,tu->tau", g1(v), g2(v)).reshape(2, channels[0], 3, 3, 3)
    torch.testing.assert_close(modulation.scale, expected, rtol=0, atol=0)
    torch.testing.assert_close(modulation.shift, g3(v), rtol=0, atol=0)
    assert (modulation.scale < 0).any() and (modulation.scale > 0).any()  # random, of mixed sign
    # the task encoder: nn.Conv2d layers built in the same order (BN draws nothing)
    torch.manual_seed(5)
    encoder = TaskEncoder(3, channels, task_dim, 16, init="published")
    torch.manual_seed(5)
    widths = (3, *channels)
    convs = [nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(len(channels))]
    project = nn.Linear(channels[-1], task_dim)
    for block, conv in zip(encoder.trunk.blocks, convs):
        torch.testing.assert_close(block.conv.weight, conv.weight, rtol=0, atol=0)
        torch.testing.assert_close(block.conv.bias, conv.bias, rtol=0, atol=0)
    torch.testing.assert_close(encoder.project.weight, project.weight, rtol=0, atol=0)
    # kml's own init: Xavier-uniform trunk, zero conv biases
    torch.manual_seed(5)
    ours = TaskEncoder(3, channels, task_dim, 16)
    assert not torch.equal(ours.trunk.blocks[0].conv.weight, convs[0].weight)
    assert ours.trunk.blocks[0].conv.bias.abs().max() == 0


def test_a_record_without_the_init_key_loads_as_the_default_init_and_evaluates(tmp_path, synthetic_root):
    """Records of the published protocol that predate ``modulation.init`` are kept as what
    they are: loaded at kml's own init, accepted by the checks that re-validate saved
    configs, and evaluated."""
    from pathlib import Path

    from fixtures_engine import TINY, compose_config
    from omegaconf import OmegaConf

    from kml.engine.checkpoints import read_run_config
    from kml.engine.rundir import load_config_file
    from kml.engine.runs import EvalOptions, evaluate_run, run_training

    committed = Path(__file__).resolve().parent.parent / "results" / "5mode_dev_protonet"
    record = committed / "5mode_dev_1shot_mprotonet-kml-published-protocol_seed0" / "config.yaml"
    assert "init" not in OmegaConf.load(record).modulation
    cfg = load_config_file(record)
    # kml 0.1 wrote MAML's options into ProtoNet's records too, and no backbone name
    assert "inner_steps" in OmegaConf.load(record).learner
    assert "inner_steps" not in cfg.learner and cfg.learner.backbone.name == "conv4"
    validate(cfg, saved=True)
    assert cfg.protocol.name == "published" and cfg.modulation.init == "default"
    with pytest.raises(ConfigError, match="sets modulation.init=published"):
        validate(cfg)  # what protocol=published means today

    # a tiny run of the same options, its saved config made to look like such a record
    options = ["learner=protonet", "modulation=kml", "learner.query_modulation=query",
               "learner.prototype_refinement=published", "modulation.identity=false",
               "modulation.factorization=published"]
    run_dir = tmp_path / "run"
    run_training(compose_config([*options, *TINY, f"data.root={synthetic_root}", "train.iterations=1"]), run_dir,
                 log=lambda *a: None)
    saved = OmegaConf.load(run_dir / "config.yaml")
    saved.protocol.name = "published"
    del saved.modulation["init"]
    OmegaConf.save(saved, run_dir / "config.yaml")
    assert read_run_config(run_dir).modulation.init == "default"
    results = evaluate_run(run_dir, options=EvalOptions(tasks_per_mode=2), device="cpu", progress=False,
                           log=lambda *a: None,
                           output=tmp_path / "eval.json")
    assert results["overall"]["tasks"] > 0
