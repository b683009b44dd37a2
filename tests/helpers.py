"""Small shared builders for the tests."""

import torch


def tiny_episode(tasks=2, ways=3, shots=1, queries=2, size=12, channels=3, seed=0, dtype=torch.float32):
    """Random tensors of a meta-batch: support (T, N*K, C, H, W), labels (T, N*K), query, labels."""
    g = torch.Generator().manual_seed(seed)
    support = torch.rand(tasks, ways * shots, channels, size, size, generator=g, dtype=dtype)
    query = torch.rand(tasks, ways * queries, channels, size, size, generator=g, dtype=dtype)
    support_labels = torch.stack([torch.randperm(ways, generator=g).repeat_interleave(shots) for _ in range(tasks)])
    query_labels = torch.stack([torch.randperm(ways, generator=g).repeat_interleave(queries) for _ in range(tasks)])
    return support, support_labels, query, query_labels


def perturb(module, scale=0.3, seed=0):
    """Move parameters (of a module, or an iterable of parameters) away from their
    initialisation (identity-initialised generators)."""
    g = torch.Generator().manual_seed(seed)
    params = module.parameters() if isinstance(module, torch.nn.Module) else module
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device))


#: the ModulationSpec and BackboneSpec fields that tests pass as keywords
_SPEC_FIELDS = ("task_dim", "hidden", "rank", "factorization", "identity", "init", "encoder_channels", "options")
_BACKBONE_FIELDS = ("channels", "style", "bn_affine", "bias", "pool")


def build(learner, modulation="none", ways=5, *, backbone=None, in_channels=3, image_size=84, **settings):
    """``kml.learners.build_learner`` with the settings of its spec arguments given as keywords
    (``channels=``, ``task_dim=``, ``rank=``, ...), sorted into a ``ModulationSpec`` and a
    ``BackboneSpec``; the rest are learner options, of which the ones this learner does not
    have are left out (tests parametrised over learners pass MAML's inner loop to all)."""
    import dataclasses

    from kml.backbone_spec import BackboneSpec
    from kml.learners import build_learner, get_learner
    from kml.modulation_spec import ModulationSpec

    own = {f.name for f in dataclasses.fields(get_learner(learner).Options)}
    settings = {k: v for k, v in settings.items() if k in own or k in _SPEC_FIELDS + _BACKBONE_FIELDS
                or k == "modulation_options"}
    if "modulation_options" in settings:
        settings["options"] = settings.pop("modulation_options")
    spec = ModulationSpec(name=modulation, **{k: settings.pop(k) for k in _SPEC_FIELDS if k in settings})
    fields = {k: settings.pop(k) for k in _BACKBONE_FIELDS if k in settings}
    return build_learner(learner, spec, ways, in_channels=in_channels, image_size=image_size,
                         backbone=BackboneSpec(name=backbone, **fields), **settings)


def assert_batched_equals_loop(net, episode):
    """The vectorised meta-batch and the per-task loop agree on ``episode`` (float64): loss,
    logits, accuracy and the meta-gradient of every parameter; the generators (when there
    are any) get a non-zero meta-gradient. Returns the batched output."""
    batched = net(*episode)
    loop = net(*episode, vectorized=False)
    torch.testing.assert_close(batched.loss, loop.loss, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(batched.logits, loop.logits, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(batched.accuracy, loop.accuracy)
    params = list(net.parameters())
    g_batched = torch.autograd.grad(batched.loss, params, allow_unused=True)
    g_loop = torch.autograd.grad(loop.loss, params, allow_unused=True)
    for (name, _), a, b in zip(net.named_parameters(), g_batched, g_loop):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=f"meta-gradient of {name}")
    generator_ids = {id(p) for p in net.backbone.generator_parameters()}
    if generator_ids:  # the generators learn from the outer loss
        assert any(g is not None and g.abs().sum() > 0 for p, g in zip(params, g_batched) if id(p) in generator_ids)
    return batched
