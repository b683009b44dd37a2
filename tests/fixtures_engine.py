"""Fixtures for tests that run whole experiments on tiny synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"

#: the tiny model of every test (build_learner keywords): 16x16 images, a 4-6-6-8 Conv-4,
#: a 6-d task embedding, 3-way tasks; 16x16 inputs keep batch statistics away from
#: degenerate 1x1 batches
TINY_MODEL = dict(channels=(4, 6, 6, 8), image_size=16, task_dim=6, ways=3)

#: the same model as run-config overrides, with a tiny budget: 4 iterations of 3 tasks,
#: 1 shot and 2 queries, 4 test tasks per mode
#: MAML's tiny inner loop (one step), to add to :data:`TINY` where the learner is MAML
TINY_MAML = ["learner.inner_steps=1"]

TINY = [
    f"data.image_size={TINY_MODEL['image_size']}",
    "learner.backbone.channels=[" + ",".join(map(str, TINY_MODEL["channels"])) + "]",
    f"modulation.task_dim={TINY_MODEL['task_dim']}",
    f"episode.ways={TINY_MODEL['ways']}",
    "episode.shots=1",
    "episode.queries=2",
    "train.iterations=4",
    "train.meta_batch_size=3",
    "train.log_every=2",
    "train.checkpoint_every=2",
    "train.progress=false",
    "eval.tasks_per_mode=4",
    "eval.batch_size=4",
    "learner.specialist.iterations=2",
    "learner.specialist.meta_batch_size=2",
]


@pytest.fixture(scope="session")
def synthetic_root(data_synthetic_root) -> Path:
    """A data root with the synthetic modes generated at 16x16 (once per session; shared
    with the data tests' ``data_synthetic_root``)."""
    return data_synthetic_root


def compose_config(overrides=(), config_name="config"):
    """The config ``scripts/<config_name>.py <overrides>`` composes (outside a fixture:
    module-scoped fixtures use it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from kml.cli import CONFIG_DIR, register_resolvers
    from kml.config import register_configs

    register_resolvers()
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture
def compose():
    """``compose(overrides) -> DictConfig`` of ``configs/config.yaml``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from kml.cli import CONFIG_DIR, register_resolvers
    from kml.config import register_configs

    register_resolvers()
    register_configs()

    def _compose(overrides=(), config_name="config"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))

    return _compose


@pytest.fixture
def tiny_learner():
    """``tiny_learner(learner, modulation, seed=0, perturbation=0.2, **overrides)``: the tiny
    model (:data:`TINY_MODEL`, ``overrides`` on top) in float64, seeded, with its
    generators moved off their identity initialisation by ``perturbation``."""
    import torch
    from helpers import build, perturb

    def make(learner, modulation, seed=0, perturbation=0.2, **overrides):
        torch.manual_seed(seed)
        net = build(learner, modulation, **{**TINY_MODEL, **overrides}).double()
        if modulation != "none" and perturbation:
            perturb(net.backbone.generator_parameters(), perturbation, seed=seed + 1)
        return net

    return make


def run_script(name: str, *args: str, cwd: Path, timeout: float = 300, check: bool = True, env=None):
    """Run ``scripts/<name>`` in a subprocess; returns the CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
