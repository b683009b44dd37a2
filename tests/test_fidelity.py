"""Fidelity to the paper and the published recipes, and one source of truth: what the
Python API builds is what the command line trains, the recipes' composed values, the
task embedding and the inner loop as published, schedules across a resume, and the
options that change numerics (lr_modulation, eval_inner_steps, bf16)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from fixtures_engine import TINY, TINY_MAML
from helpers import build, perturb, tiny_episode

from kml.engine.checkpoints import load_checkpoint, load_run
from kml.engine.from_config import build_learner_from_config, specialist_config
from kml.engine.optim import build_optimizers
from kml.engine.runs import EvalOptions, evaluate_run, run_training
from kml.errors import KmlError


# ------------------------------------------------------------------ one source of defaults
@pytest.mark.parametrize("learner", ["maml", "protonet"])
@pytest.mark.parametrize("modulation", ["none", "film", "kml"])
def test_the_api_and_the_command_line_build_the_same_method(compose, learner, modulation):
    cfg = compose([f"learner={learner}", f"modulation={modulation}", "data.image_size=84"])
    configured = build_learner_from_config(cfg)
    api = build(learner, modulation)
    assert {k: v.shape for k, v in api.state_dict().items()} == {k: v.shape for k, v in configured.state_dict().items()}
    assert (api.backbone.pool, api.backbone.style, api.backbone.channels) == (
        configured.backbone.pool, configured.backbone.style, configured.backbone.channels)
    assert (api.backbone.blocks[0].bn is None) == (configured.backbone.blocks[0].bn is None)
    if learner == "maml":
        assert (api.inner_steps, api.inner_lr, api.grad_clip, api.first_order) == (
            configured.inner_steps, configured.inner_lr, configured.grad_clip, configured.first_order)
    # the published ProtoNet: flattened features and affine BN, from both
    if learner == "protonet":
        assert api.backbone.pool == "flatten" and api.backbone.blocks[0].bn is not None


def test_multi_specialists_follow_the_published_recipes(compose):
    maml = compose(["mode=2mode", "learner=maml", "modulation=none", "multi=true"])
    omniglot = specialist_config(maml, "omniglot")
    assert (omniglot.learner.inner_lr, omniglot.learner.inner_steps) == (0.4, 1)
    assert (omniglot.train.meta_batch_size, omniglot.train.iterations) == (10, 60000)
    mini = specialist_config(maml, "miniimagenet")
    assert (mini.learner.inner_lr, mini.learner.inner_steps) == (0.01, 5)
    assert (mini.train.meta_batch_size, mini.train.iterations) == (4, 80000)
    # command-line overrides of one dataset's specialist
    tuned = compose(["mode=2mode", "learner=maml", "multi=true",
                     "learner.specialist.per_dataset.omniglot.iterations=7"])
    assert specialist_config(tuned, "omniglot").train.iterations == 7
    assert specialist_config(tuned, "miniimagenet").train.iterations == 80000
    proto = compose(["mode=2mode", "learner=protonet", "modulation=none", "multi=true"])
    for dataset in ("omniglot", "miniimagenet"):
        spec = specialist_config(proto, dataset)
        assert (spec.train.iterations, spec.train.meta_batch_size, spec.train.lr) == (30000, 10, 0.001)
        assert spec.train.scheduler.step_size == 10000


def test_load_run_of_a_multi_run_without_a_mode_builds_that_specialist(compose, synthetic_root, tmp_path):
    cfg = compose([f"data.root={synthetic_root}", *TINY, *TINY_MAML, "learner=maml", "modulation=none", "multi=true",
                   "+learner.specialist.per_dataset.synthetic_glyphs.inner_steps=3",
                   "+learner.specialist.per_dataset.synthetic_glyphs.inner_lr=0.123"])
    run_training(cfg, tmp_path, log=lambda *a: None)
    loaded = load_run(tmp_path)  # no mode: the first specialist
    assert loaded.specialist == "synthetic_glyphs"
    assert (loaded.learner.inner_steps, loaded.learner.inner_lr) == (3, 0.123)
    other = load_run(tmp_path, mode="synthetic_shapes")
    assert other.learner.inner_steps == cfg.learner.specialist.inner_steps
    assert other.learner.inner_lr == pytest.approx(cfg.learner.specialist.inner_lr)


# ------------------------------------------------------------------ the method as published
@pytest.mark.parametrize("learner", ["maml", "protonet"])
def test_the_task_embedding_does_not_depend_on_the_query_set(learner):
    torch.manual_seed(0)
    net = build(learner, "kml", ways=3, channels=(4, 4, 4, 4), image_size=16, task_dim=6, inner_steps=1)
    perturb(net.backbone.generator_parameters(), 0.3)
    support, s_labels, query, q_labels = tiny_episode(tasks=2, ways=3, shots=2, queries=3, size=16, seed=1)
    other_query = torch.rand_like(query)
    a = net(support, s_labels, query, q_labels)
    b = net(support, s_labels, other_query, q_labels)
    torch.testing.assert_close(a.task_embedding, b.task_embedding, atol=0, rtol=0)
    torch.testing.assert_close(a.task_embedding, net.encoder(support), atol=0, rtol=0)


def test_the_encoder_and_generators_are_not_adapted_in_the_inner_loop():
    """Query logits equal a hand-written inner loop that adapts the backbone's conv, BN
    and head parameters only, with the modulation computed once from the support set."""
    torch.manual_seed(2)
    net = build("maml", "kml", ways=3, channels=(4, 4, 4, 4), image_size=16, task_dim=6, inner_steps=2,
                        inner_lr=0.3, grad_clip=None).double()
    perturb(net.backbone.generator_parameters(), 0.3)
    support, s_labels, query, q_labels = tiny_episode(tasks=1, ways=3, shots=2, size=16, seed=3, dtype=torch.float64)
    out = net(support, s_labels, query, q_labels)

    v = net.encoder(support)
    modulation = net.backbone.modulations(v)  # once: fixed through the inner loop
    adaptable = dict(net.backbone.named_adaptable_parameters())
    assert not any("generator" in n for n in adaptable) and all(not n.startswith("encoder") for n in adaptable)
    fast = {n: p for n, p in adaptable.items()}
    for _ in range(2):
        logits = net.backbone(support, modulation, params=fast)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), s_labels.reshape(-1))
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
        fast = {n: p - 0.3 * g for (n, p), g in zip(fast.items(), grads)}
    expected = net.backbone(query, modulation, params=fast)
    torch.testing.assert_close(out.logits, expected, atol=1e-10, rtol=1e-10)
    # and the generators do learn from the outer loss, through the adapted weights
    grads = torch.autograd.grad(out.loss, net.backbone.generator_parameters() + list(net.encoder.parameters()))
    assert all(g.abs().sum() > 0 for g in grads[:2]) and any(g.abs().sum() > 0 for g in grads[-4:])


def test_conv_bias_and_kml_bias_shift_are_inert_under_batch_norm():
    """Every conv is followed by batch-statistics BatchNorm, so the conv biases and KML's
    db(v) cancel exactly: zeroing them changes no logit (float64)."""
    torch.manual_seed(4)
    net = build("protonet", "kml", ways=3, channels=(4, 6, 6, 8), image_size=16, task_dim=6).double()
    perturb(net.parameters(), 0.5)
    support, s_labels, query, q_labels = tiny_episode(tasks=2, ways=3, shots=2, size=16, seed=5, dtype=torch.float64)
    before = net(support, s_labels, query, q_labels).logits
    shifts = [m.shift.abs().max().item() for m in net.backbone.modulations(net.encoder(support))]
    assert min(shifts) > 0.1  # db(v) is far from zero here...
    with torch.no_grad():
        for block in net.backbone.blocks:
            block.conv.bias.zero_()
            for p in block.conv.generator.g3.parameters():
                p.zero_()
    after = net(support, s_labels, query, q_labels).logits
    torch.testing.assert_close(after, before, atol=1e-9, rtol=1e-9)  # ...and changes nothing


# ------------------------------------------------------------------ options that change numerics
def test_lr_modulation_sets_the_modulation_optimiser(compose):
    cfg = compose(["learner=protonet", "modulation=kml", "train.lr=0.002", "train.lr_modulation=0.0003"])
    learner = build_learner_from_config(cfg)
    backbone_opt, modulation_opt = build_optimizers(learner, cfg)
    assert backbone_opt.param_groups[0]["lr"] == 0.002 and modulation_opt.param_groups[0]["lr"] == 0.0003
    modulated = {id(p) for p in learner.modulation_parameters()}
    assert {id(p) for p in modulation_opt.param_groups[0]["params"]} == modulated
    assert not modulated & {id(p) for p in backbone_opt.param_groups[0]["params"]}
    generators = {id(p) for p in learner.backbone.generator_parameters()}
    assert generators and generators <= modulated
    default = build_optimizers(learner, compose(["learner=protonet", "modulation=kml", "train.lr=0.002"]))
    assert default[1].param_groups[0]["lr"] == 0.002


def test_eval_inner_steps_are_used_in_eval_mode_only():
    torch.manual_seed(6)
    net = build("maml", "none", ways=3, channels=(4, 4, 4, 4), image_size=16, inner_steps=2,
                        eval_inner_steps=0)
    support, s_labels, query, q_labels = tiny_episode(tasks=2, ways=3, shots=1, size=16, seed=7)
    calls = []
    forward = net.backbone.forward
    net.backbone.forward = lambda *a, **k: (calls.append(1), forward(*a, **k))[1]
    net.train()
    net(support, s_labels, query, q_labels)
    assert len(calls) == 3  # 2 inner steps + the query
    calls.clear()
    net.eval()
    with torch.no_grad():
        out = net(support, s_labels, query, q_labels)
    assert len(calls) == 1  # 0 inner steps: the query only, with the meta-parameters
    torch.testing.assert_close(out.logits, forward(query))


def test_bf16_on_cpu_trains_and_keeps_inner_updates_in_float32(compose, synthetic_root, tmp_path):
    net = build("maml", "kml", ways=3, channels=(4, 4, 4, 4), image_size=16, task_dim=6, inner_steps=2)
    support, s_labels, query, q_labels = tiny_episode(tasks=2, ways=3, shots=1, size=16, seed=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = net.adapt(support, s_labels, net.backbone.modulations(net.encoder(support)))
        embedding = net(support, s_labels, query, q_labels).task_embedding
    assert all(v.dtype == torch.float32 for v in fast.values())
    assert embedding.dtype == torch.bfloat16  # the forward passes did run in bf16
    cfg = compose([f"data.root={synthetic_root}", *TINY, *TINY_MAML, "learner=maml", "modulation=kml",
                   "train.precision=bf16"])
    results = run_training(cfg, tmp_path, log=lambda *a: None)
    assert 0 < results["overall"]["accuracy"] <= 100
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_resume_with_a_step_schedule_equals_the_uninterrupted_run(compose, synthetic_root, tmp_path):
    common = [f"data.root={synthetic_root}", *TINY, "learner=protonet", "modulation=kml",
              "train.scheduler.step_size=3", "train.scheduler.gamma=0.5", "train.log_every=1",
              "train.checkpoint_every=2"]
    run_training(compose([*common, "train.iterations=8"]), tmp_path / "full", log=lambda *a: None)
    run_training(compose([*common, "train.iterations=5"]), tmp_path / "cut", log=lambda *a: None)
    resumed = compose([*common, "train.iterations=8", f"resume={tmp_path / 'cut'}"])
    run_training(resumed, tmp_path / "cut", overrides=["train.iterations=8"], log=lambda *a: None)
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key, value in full["model"].items():
        torch.testing.assert_close(cut["model"][key], value, atol=0, rtol=0)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
           if '"loss"' in line]
    assert lrs == [0.001] * 2 + [0.0005] * 3 + [0.00025] * 3  # stepped at 3 and 6 (the schedule ran)
    assert [json.loads(line)["lr"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line] == lrs


# ------------------------------------------------------------------ the command line reaches the API
def test_train_reaches_split_schemes(compose, data_builders, synthetic_root, tmp_path):
    from kml.data import prepare_dataset

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    source = data_builders.omniglot(tmp_path / "src")
    prepare_dataset("omniglot", root, 16, source=source, split="lake", verbose=False)
    common = [f"data.root={root}", *TINY, "mode=omniglot", "episode.ways=2", "eval.tasks_per_mode=2"]
    with pytest.raises(KmlError, match=r"dataset 'omniglot' is not prepared at .*omniglot/16; run: .*"
                                       r"prepare_data.py dataset=omniglot"):
        run_training(compose(common), tmp_path / "vinyals", log=lambda *a: None)
    results = run_training(compose([*common, "data.splits.omniglot=lake"]), tmp_path / "lake", log=lambda *a: None)
    assert results["config"]["data"]["splits"]["omniglot"] == "lake" and results["per_mode"]["omniglot"]["tasks"] == 2


def test_a_mode_without_train_classes_is_evaluated_or_refused(compose, data_builders, synthetic_root, tmp_path):
    from kml.data import prepare_dataset

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    prepare_dataset("gtsrb", root, 16, source=data_builders.gtsrb(tmp_path / "src"), split="test_only", verbose=False)
    mixture = [f"data.root={root}", *TINY, "mode.name=glyphs_gtsrb", "mode.datasets=[synthetic_glyphs,gtsrb]",
               "data.splits.gtsrb=test_only", "eval.tasks_per_mode=3", "episode.queries=1"]
    results = run_training(compose(mixture), tmp_path / "run", log=lambda *a: None)
    assert list(results["per_mode"]) == ["synthetic_glyphs", "gtsrb"]  # evaluated, not dropped
    assert results["train_modes"] == ["synthetic_glyphs"] and results["per_mode"]["gtsrb"]["tasks"] == 3
    with pytest.raises(KmlError, match=r"multi=true trains one specialist per mode, but gtsrb has no train classes"):
        run_training(compose([*mixture, "multi=true"]), tmp_path / "multi", log=lambda *a: None)
    assert not (tmp_path / "multi").exists()


def test_eval_on_another_mode_and_episode_shape(compose, synthetic_root, tmp_path):
    cfg = compose([f"data.root={synthetic_root}", *TINY, "learner=protonet", "modulation=kml",
                   "mode.datasets=[synthetic_glyphs,synthetic_textures]", "mode.name=two"])
    run_training(cfg, tmp_path, log=lambda *a: None)
    options = EvalOptions(datasets=["synthetic_shapes"], shots=2, ways=4, tasks_per_mode=3)
    other = evaluate_run(tmp_path, options=options, progress=False, log=lambda *a: None)
    assert list(other["per_mode"]) == ["synthetic_shapes"] and other["mode"] == "synthetic_shapes"
    assert (other["eval"]["ways"], other["eval"]["shots"]) == (4, 2)
    path = tmp_path / "eval_last_test_synthetic_shapes_4w2s.json"
    assert json.loads(path.read_text())["per_mode"]["synthetic_shapes"]["tasks"] == 3
    records = json.loads(path.with_name(path.stem + "_tasks.json").read_text())
    assert records["eval"]["shots"] == 2 and len(records["modes"]["synthetic_shapes"]["accuracy"]) == 3
    with pytest.warns(DeprecationWarning, match=r"is now evaluate_run\(..., options=EvalOptions\("):  # kml 0.1's form
        again = evaluate_run(tmp_path, datasets=["synthetic_shapes"], shots=2, ways=4, tasks_per_mode=3,
                             progress=False, log=lambda *a: None)
    assert again["overall"] == other["overall"]
    # MAML's head fixes its ways
    maml = compose([f"data.root={synthetic_root}", *TINY, *TINY_MAML, "learner=maml", "modulation=none"])
    run_training(maml, tmp_path / "maml", log=lambda *a: None)
    with pytest.raises(KmlError, match=r"episode.ways=5: this MAML learner was trained 3-way .* episode.ways=3"):
        evaluate_run(tmp_path / "maml", options=EvalOptions(ways=5), progress=False, log=lambda *a: None)


@pytest.mark.parametrize("learner", ["maml", "protonet"])
def test_learner_backbone_bias_false_drops_them_with_the_same_predictions(compose, learner):
    cfg = compose([f"learner={learner}", "modulation=kml", "learner.backbone.bias=false", "data.image_size=16",
                   "learner.backbone.channels=[4,6,6,8]", "modulation.task_dim=6",
                   *(["learner.inner_steps=2"] if learner == "maml" else [])])
    without = build_learner_from_config(cfg).double()
    names = {n for n, _ in without.named_parameters()}
    assert not any(n.endswith("conv.bias") or ".g3." in n for n in names if n.startswith("backbone."))
    torch.manual_seed(9)
    full = build(learner, "kml", ways=5, channels=(4, 6, 6, 8), image_size=16, task_dim=6,
                         inner_steps=2).double()
    perturb(full.parameters(), 0.3)
    kept = {k: v for k, v in full.state_dict().items() if k in without.state_dict()}
    without.load_state_dict(kept)
    support, s_labels, query, q_labels = tiny_episode(tasks=2, ways=5, shots=1, size=16, seed=10, dtype=torch.float64)
    torch.testing.assert_close(without(support, s_labels, query, q_labels).logits,
                               full(support, s_labels, query, q_labels).logits, atol=1e-9, rtol=1e-9)


def test_modulation_statistics_see_identity_at_init_task_dependence_after_and_inert_biases():
    from kml.analysis.diagnostics import bias_inertness, modulation_statistics
    from kml.data import EpisodeBatch

    torch.manual_seed(11)
    tensors = tiny_episode(tasks=3, ways=3, shots=2, size=16, seed=12)
    batch = EpisodeBatch(*tensors, ways=3)
    for kind in ("kml", "film"):
        net = build("protonet", kind, ways=3, channels=(4, 6, 6, 8), image_size=16, task_dim=6)
        fresh = modulation_statistics(net, [("m", batch)])["m"]
        assert fresh["tasks"] == 3 and len(fresh["blocks"]) == 4
        if kind == "kml":  # the identity modulation at initialisation
            assert all(b["m_abs_mean"] == 0 and b["db_abs_mean"] == 0 for b in fresh["blocks"])
        else:
            assert all(b["scale_mean"] == 1 and b["scale_negative_share"] == 0 for b in fresh["blocks"])
        perturb(net.backbone.generator_parameters(), 0.5)
        trained = modulation_statistics(net, [("m", batch)])["m"]
        spread = "m_task_spread" if kind == "kml" else "scale_task_spread"
        assert all(b[spread] > 0 for b in trained["blocks"])  # depends on the task now
        assert trained["embedding"]["task_spread"] > 0
        assert bias_inertness(net, batch) < 1e-9
    plain = build("protonet", "none", ways=3, channels=(4, 6, 6, 8), image_size=16)
    assert "blocks" not in modulation_statistics(plain, [("m", batch)])["m"]
