"""kml.analysis.transference: LR = 1 at alpha = 0, self-transference below 1 (and its first-order
value), batched == loop in float64, shares and the neutral band, the mode-to-mode
matrix against the loop, and scripts/transference.py writing its JSON and PNGs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from helpers import build, tiny_episode

from kml.analysis.transference import (
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    Tasks,
    as_tasks,
    default_chunk_size,
    meta_parameters,
    mode_matrix,
    self_transference,
    source_gradients,
    transfer_classes,
    transfer_shares,
    transference,
)

VARIANTS = [("maml", "none"), ("maml", "kml"), ("protonet", "none"), ("protonet", "kml")]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are tiny: a second intra-op thread only adds synchronisation
    (and, on a busy machine, spinning OpenMP barriers that cost 10-40x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make(tiny_learner):
    """The tiny learner with a 2-step inner loop of lr 0.05 (MAML), generators perturbed."""
    return lambda learner, modulation, seed=0, **kw: tiny_learner(
        learner, modulation, seed=seed, **{"inner_steps": 2, "inner_lr": 0.05, **kw}
    )


def episodes(tasks, seed, modes=None):
    return Tasks(
        *tiny_episode(tasks=tasks, ways=3, shots=2, queries=3, size=16, seed=seed, dtype=torch.float64),
        modes=modes,
        ways=3,
    )


@pytest.mark.parametrize("learner,modulation", VARIANTS)
def test_alpha_zero_gives_lr_exactly_one(learner, modulation, make):
    net = make(learner, modulation)
    sources, targets = episodes(5, seed=1), episodes(2, seed=2)
    for result in (
        transference(net, sources, targets, 0.0, chunk_size=2),  # 3 chunks, the last one padded
        transference(net, sources, targets, 0.0, vectorized=False),
    ):
        assert result.lr.shape == (5, 2) and result.lr.dtype == torch.float64
        assert torch.all(result.lr == 1.0)
        assert torch.all(result.loss_before > 0)
    assert torch.all(self_transference(net, sources, 0.0, chunk_size=2).lr == 1.0)
    assert torch.all(self_transference(net, sources, 0.0, vectorized=False).lr == 1.0)
    # a non-zero step changes the target losses
    assert not torch.all(transference(net, sources, targets, 1e-2, chunk_size=2).lr == 1.0)


@pytest.mark.parametrize("learner,modulation", VARIANTS)
def test_batched_equals_loop_reference_in_float64(learner, modulation, make):
    net = make(learner, modulation, seed=3)
    sources, targets = episodes(5, seed=4), episodes(2, seed=5)
    loop = transference(net, sources, targets, 0.05, vectorized=False)
    for chunk in (1, 2, 5):
        batched = transference(net, sources, targets, 0.05, chunk_size=chunk)
        torch.testing.assert_close(batched.lr, loop.lr, rtol=1e-8, atol=0)
        torch.testing.assert_close(batched.loss_before, loop.loss_before, rtol=1e-10, atol=0)
    # the step is a real one: sources disagree and some move the target loss by > 0.1 %
    assert (loop.lr - 1).abs().max() > 1e-3 and loop.lr.std() > 0
    s_batched = self_transference(net, sources, 0.05, chunk_size=2)
    s_loop = self_transference(net, sources, 0.05, vectorized=False)
    torch.testing.assert_close(s_batched.lr, s_loop.lr, rtol=1e-8, atol=0)


def test_per_source_gradients_are_each_tasks_own_meta_gradient(make):
    """MAML+KML, second order: slice i of the batched gradient is autograd of task i alone."""
    net = make("maml", "kml", seed=6)
    sources = episodes(3, seed=7)
    params = meta_parameters(net)
    assert set(params) == {n for n, _ in net.named_parameters()}  # backbone, encoder, generators
    grads = source_gradients(net, sources)
    for i in range(3):
        alone = torch.autograd.grad(net(*sources.select(i).tensors, vectorized=False).loss, list(params.values()))
        for (name, _), g in zip(params.items(), alone):
            torch.testing.assert_close(grads[name][i], g, rtol=1e-8, atol=1e-12, msg=name)
    assert any(grads[n].abs().sum() > 0 for n in params if n.startswith("encoder"))


@pytest.mark.parametrize("learner,modulation", [("maml", "kml"), ("protonet", "kml"), ("protonet", "none")])
def test_self_transference_small_alpha_is_below_one_at_first_order(learner, modulation, make):
    """LR_ii = 1 - alpha |g_i|^2 / L_i + O(alpha^2) < 1."""
    net = make(learner, modulation, seed=8)
    tasks = episodes(4, seed=9)
    grads = source_gradients(net, tasks)
    sq_norm = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())
    with torch.no_grad():
        losses = net(*tasks.tensors).task_losses
    alpha = 1e-3 * float((losses / sq_norm).min())  # predicted decrease <= 0.1 %
    result = self_transference(net, tasks, alpha, chunk_size=3)
    assert torch.all(result.lr < 1.0)
    predicted = alpha * sq_norm / losses
    ratio = (1.0 - result.lr) / predicted
    assert torch.all((ratio > 0.9) & (ratio < 1.1)), ratio
    torch.testing.assert_close(result.loss_before, losses, rtol=1e-10, atol=0)
    assert result.shares(neutral=0.0).positive == 100.0


def test_shares_add_up_and_the_neutral_band_classifies():
    lr = [0.5, 0.97, 0.995, 1.0, 1.004, 1.02, 1.5, 3.0]
    shares = transfer_shares(lr, neutral=0.01)
    assert (shares.positive_count, shares.neutral_count, shares.negative_count) == (2, 3, 3)
    assert (shares.positive, shares.neutral, shares.negative) == (25.0, 37.5, 37.5)
    assert transfer_classes(lr, 0.01).tolist() == [POSITIVE, POSITIVE, NEUTRAL, NEUTRAL, NEUTRAL, NEGATIVE,
                                                   NEGATIVE, NEGATIVE]
    assert transfer_shares(lr, neutral=0.0).neutral_count == 1  # only LR == 1 exactly
    wide = transfer_shares(lr, neutral=0.6)
    assert (wide.positive_count, wide.neutral_count, wide.negative_count) == (0, 7, 1)
    values = np.random.default_rng(0).lognormal(0.0, 0.02, size=(301, 3))
    for band in (0.0, 0.005, 0.01, 0.05):
        s = transfer_shares(torch.from_numpy(values), band)
        assert s.total == values.size
        assert s.positive + s.neutral + s.negative == pytest.approx(100.0, abs=1e-9)
        assert s.neutral_count == int((np.abs(values - 1) <= band).sum())
    with pytest.raises(ValueError, match="neutral band"):
        transfer_shares(lr, neutral=-0.1)


def test_mode_matrix_against_the_loop(make):
    net = make("protonet", "kml", seed=10)
    sources = episodes(5, seed=11, modes=["glyphs", "shapes", "glyphs", "shapes", "shapes"])
    targets = episodes(3, seed=12, modes=["shapes", "glyphs", "shapes"])
    result = transference(net, sources, targets, 0.05, chunk_size=2)
    matrix = result.matrix(neutral=0.001, mode_order=["shapes", "glyphs", "textures"])
    assert matrix.source_modes == ["shapes", "glyphs"] and matrix.target_modes == ["shapes", "glyphs"]
    assert matrix.mean_lr.shape == (2, 2)
    assert matrix.counts.tolist() == [[6, 3], [4, 2]]
    # every (source, target) pair from the per-source loop, averaged by hand
    loop = transference(net, sources, targets, 0.05, vectorized=False).lr.numpy()
    for a, mode_a in enumerate(matrix.source_modes):
        for b, mode_b in enumerate(matrix.target_modes):
            block = [loop[i, j] for i in range(5) for j in range(3)
                     if sources.task_modes[i] == mode_a and targets.task_modes[j] == mode_b]
            assert matrix.mean_lr[a, b] == pytest.approx(np.mean(block), rel=1e-10)
            assert matrix.positive[a, b] == pytest.approx(100.0 * np.mean(np.asarray(block) < 0.999))
            total = matrix.positive[a, b] + matrix.neutral[a, b] + matrix.negative[a, b]
            assert total == pytest.approx(100.0)
    with pytest.raises(ValueError, match="sources, targets"):
        mode_matrix(result.lr[:2], sources.task_modes, targets.task_modes)


def test_tasks_from_an_episode_batch_and_chunk_budget():
    from kml.data import EpisodeBatch

    s, sl, q, ql = tiny_episode(tasks=3, ways=3, shots=1, queries=2, size=16)
    batch = EpisodeBatch(s, sl, q, ql, modes=torch.tensor([1, 0, 1]), ways=3, shots=1, queries=2)
    tasks = as_tasks(batch, mode_names=["glyphs", "shapes"])
    assert tasks.task_modes == ["shapes", "glyphs", "shapes"] and tasks.ways == 3 and len(tasks) == 3
    assert type(tasks) is EpisodeBatch and Tasks is EpisodeBatch  # one task-batch type
    both = Tasks.cat([tasks, tasks.select(1)])
    assert len(both) == 4 and both.task_modes[-1] == "glyphs" and torch.equal(both.query[3], q[1])
    net = build("protonet", "kml", ways=5, image_size=32)
    small = default_chunk_size(net, budget_bytes=64 * 2**20)
    assert 1 <= small < default_chunk_size(net) < default_chunk_size(net, budget_bytes=2**31)


# --------------------------------------------------------------------------- the script


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, synthetic_root):
    """Two tiny trained runs (ProtoNet and MProtoNet+KML) with checkpoints at 2 and 4."""
    from fixtures_engine import TINY as TINY_RUN
    from hydra import compose, initialize_config_dir

    from kml.cli import CONFIG_DIR, register_resolvers
    from kml.config import register_configs
    from kml.engine.runs import run_training

    register_resolvers()
    register_configs()
    root = tmp_path_factory.mktemp("transference")
    runs = []
    for modulation in ("none", "kml"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[f"modulation={modulation}", f"data.root={synthetic_root}", *TINY_RUN])
        run_dir = root / f"run_{modulation}"
        run_training(cfg, run_dir, log=lambda *a: None)
        runs.append(run_dir)
    return root, runs


def _script():
    """The analysis behind scripts/transference.py (the script itself only calls ``run``)."""
    import kml.analysis.transference_runs

    return kml.analysis.transference_runs


def _compose_transference(overrides):
    from hydra import compose, initialize_config_dir

    from kml.cli import CONFIG_DIR
    from kml.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("transference", overrides=list(overrides))


def test_script_writes_json_and_pngs_for_tiny_runs(tiny_runs):
    root, (plain, kml_run) = tiny_runs
    out = root / "out"
    cfg = _compose_transference([
        f"run_dirs=[{plain},{kml_run}]", "sources=5", "chunk_size=2", "alpha=0.01", "neutral=0.001",
        "matrix=true", "matrix_sources=2", "matrix_targets=1", "device=cpu", "progress=false", "float64=true",
        f"output_dir={out}",
    ])
    _script().run(cfg, log=lambda *a: None)
    report = json.loads((out / "transference.json").read_text())
    assert [r["method"] for r in report["runs"]] == ["ProtoNet", "MProtoNet+KML"]
    for name in ("lr_histograms_protonet.png", "lr_histograms_mprotonet_kml.png", "lr_overlay.png",
                 "mode_matrix_protonet.png", "mode_matrix_mprotonet_kml.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    modes = ["synthetic_glyphs", "synthetic_textures", "synthetic_shapes"]
    for record in report["runs"]:
        assert (record["source_mode"], record["target_mode"]) == (modes[0], modes[1])
        assert record["alpha"] == 0.01 and [e["iteration"] for e in record["checkpoints"]] == [2, 4]
        for entry in record["checkpoints"]:
            lr = np.asarray(entry["lr"])
            assert lr.shape == (5, 1) and np.all(lr > 0)
            after, before = np.asarray(entry["loss_after"]), np.asarray(entry["loss_before"])
            np.testing.assert_allclose(lr, after / before[None, :], rtol=1e-12)
            shares = entry["shares"]
            assert shares["positive"] + shares["neutral"] + shares["negative"] == pytest.approx(100.0)
            assert shares["positive_count"] == int((lr < 0.999).sum())
            assert np.asarray(entry["matrix"]["mean_lr"]).shape == (3, 3)
            assert entry["matrix"]["counts"] == [[2, 2, 2]] * 3
            assert entry["source_modes"] == [modes[0]] * 5 and entry["target_modes"] == [modes[1]]
    # the JSON's values are the library's on the same tasks (loop reference, this checkpoint)
    from kml.engine.checkpoints import load_run
    from kml.engine.from_config import tasksets_for

    script = _script()
    loaded = load_run(kml_run, 4)
    sampler = tasksets_for(loaded.config, "cpu", seed=0)
    sources = script.sample_tasks(sampler.train, modes[0], 5, 0, "cpu", torch.float64)
    from kml.data import derive_seed

    targets = script.sample_tasks(sampler.test, modes[1], 1, derive_seed("kml-transference-target", 0), "cpu",
                                  torch.float64)
    expected = transference(loaded.learner.double(), sources, targets, 0.01, vectorized=False).lr.numpy()
    np.testing.assert_allclose(report["runs"][1]["checkpoints"][1]["lr"], expected, rtol=1e-9)
    assert report["runs"][1]["dtype"] == "float64"


def test_script_command_line_and_user_errors(tiny_runs):
    from fixtures_engine import run_script
    from hydra.errors import ConfigCompositionException

    from kml.errors import KmlError

    root, (plain, _) = tiny_runs
    proc = run_script("transference.py", f"run_dirs=[{root}/run_n*]", "checkpoints=[4]", "sources=3",
                      "progress=false", "target_mode=synthetic_shapes", "source_split=val", cwd=root,
                      env={"OMP_NUM_THREADS": "1"})
    report = json.loads((plain / "transference" / "transference.json").read_text())
    (record,) = report["runs"]
    assert record["run_dir"] == str(plain)
    assert record["alpha"] == pytest.approx(0.025)  # the default source step (our choice)
    run_script("transference.py", f"run_dirs=[{plain}]", "checkpoints=[4]", "sources=2", "alpha=null",
               "progress=false", "output_dir=lr_alpha", cwd=root, env={"OMP_NUM_THREADS": "1"})
    own = json.loads((root / "lr_alpha" / "transference.json").read_text())["runs"][0]
    assert own["alpha"] == pytest.approx(1e-3)  # alpha=null: the run's train.lr
    assert (record["source_split"], record["target_mode"]) == ("val", "synthetic_shapes")
    assert [e["iteration"] for e in record["checkpoints"]] == [4]
    assert "| ProtoNet | 4 |" in proc.stdout
    assert (plain / "transference" / "lr_histograms_protonet.png").is_file()
    bad = run_script("transference.py", f"run_dirs=[{plain}]", "checkpoints=[3]", cwd=root, check=False,
                     env={"OMP_NUM_THREADS": "1"})
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == f"error: {plain} has no checkpoint at iteration(s) [3]; available iterations: 2, 4"
    # the same user errors in-process
    with pytest.raises(ConfigCompositionException, match="sourcez"):
        _compose_transference([f"run_dirs=[{plain}]", "sourcez=3"])
    script = _script()
    for overrides, message in [
        (["target_mode=fc100"], "target_mode=fc100 is not a mode of this run; its modes are: synthetic_glyphs"),
        (["source_split=dev"], "source_split='dev' is not valid"),
        (["neutral=-1"], "neutral=-1.0 is out of range"),
        (["labels=[a,b]"], "labels has 2 entries for 1 runs"),
    ]:
        cfg = _compose_transference([f"run_dirs=[{plain}]", "sources=2", "progress=false", *overrides])
        with pytest.raises(KmlError, match=re.escape(message)):
            script.run(cfg, log=lambda *a: None)
    with pytest.raises(KmlError, match="run_dirs is empty"):
        script.run(_compose_transference([]), log=lambda *a: None)
    with pytest.raises(KmlError, match="matches nothing"):
        script.run(_compose_transference([f"run_dirs=[{root}/nothing*]"]), log=lambda *a: None)
