"""The ProtoNet family's protocol options: the paper's text (default) and the published
KML code's query modulation, prototype refinement and batch statistics."""

import pytest
import torch
from helpers import tiny_episode

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


def test_published_refinement_drops_the_last_support_row_of_each_class():
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
    # 3-shot: rows jK, jK+1 of class j enter, row jK+2 does not; the denominator counts K
    shots = 3
    support = torch.randn(1, ways * shots, dim, generator=g, dtype=torch.float64)
    labels = torch.arange(ways).repeat_interleave(shots).unsqueeze(0)
    means = support[0].reshape(ways, shots, dim).mean(1)
    p = torch.softmax(-torch.cdist(query[0], means) ** 2, dim=-1)
    kept = support[0].reshape(ways, shots, dim)[:, :2].sum(1)
    expected = (kept + p.T @ query[0]) / (shots + p.sum(0)).unsqueeze(-1)
    torch.testing.assert_close(published_refined_prototypes(support, labels, query, ways)[0], expected,
                               rtol=1e-12, atol=1e-12)


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
    episode = _episode(shots=2, tasks=3)
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
    assert (cfg.modulation.identity, cfg.modulation.factorization) == (False, "published")
    paper = compose([])
    assert paper.protocol.name == "paper"
    assert (paper.learner.query_modulation, paper.learner.prototype_refinement, paper.learner.batch_norm) == (
        "support", "none", "separate")
    assert (paper.modulation.identity, paper.modulation.factorization) == (True, "channel")


@pytest.mark.parametrize("overrides,message", [
    (["learner=maml", "protocol=published"], "ProtoNet family only"),
    (["learner=maml", "learner.prototype_refinement=soft"], "is a ProtoNet option"),
    (["learner.batch_norm=joint", "learner.query_modulation=query"], "cannot be combined"),
    (["learner.prototype_refinement=hard"], "learner.prototype_refinement='hard' is not valid"),
    # a run recorded as protocol=published follows every option of it
    (["protocol=published", "learner.prototype_refinement=none"],
     "protocol=published sets learner.prototype_refinement=published, but this run has "
     "learner.prototype_refinement=none; drop that override"),
    (["protocol=published", "modulation.identity=true"], "sets modulation.identity=false, but this run has "
                                                         "modulation.identity=true"),
])
def test_protocol_misuse_is_refused_in_one_line(overrides, message, compose):
    with pytest.raises(ConfigError, match=message) as err:
        validate(compose(overrides))
    assert "\n" not in str(err.value)


def test_published_refinement_refuses_support_rows_out_of_class_order():
    features = torch.randn(1, 6, 4, dtype=torch.float64)
    query = torch.randn(1, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="class-major support labels"):
        published_refined_prototypes(features, torch.tensor([[1, 1, 0, 0, 2, 2]]), query, 3)
    published_refined_prototypes(features, torch.tensor([[0, 0, 1, 1, 2, 2]]), query, 3)
