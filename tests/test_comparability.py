"""Runs stay comparable with the recorded ones: for every method and protocol option, a
fixed-seed build from the run config gives the same initial parameters (identical
hashes) and a tiny training run the same first losses as the code the committed records
were trained with.

The reference values in ``comparability_reference.json`` were computed by this module's
``main`` (``python tests/test_comparability.py <data root of the 16x16 synthetic modes>``)
on that code, before the library's modulations, learners and backbones became
registries; do not regenerate them to make a change pass.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from fixtures_engine import TINY

REFERENCE = Path(__file__).with_name("comparability_reference.json")

#: every method, the generator factorisations and the ProtoNet protocol options
VARIANTS = {
    "MAML": ["learner=maml", "modulation=none"],
    "MMAML": ["learner=maml", "modulation=film"],
    "MMAML+KML": ["learner=maml", "modulation=kml"],
    "MMAML+KML published factors": ["learner=maml", "modulation=kml", "modulation.factorization=published"],
    "MMAML+KML full generator": ["learner=maml", "modulation=kml", "modulation.factorization=full"],
    "ProtoNet": ["learner=protonet", "modulation=none"],
    "MProtoNet": ["learner=protonet", "modulation=film"],
    "MProtoNet+KML": ["learner=protonet", "modulation=kml"],
    "MProtoNet+KML published factors": ["learner=protonet", "modulation=kml", "modulation.factorization=published"],
    "MProtoNet+KML full generator": ["learner=protonet", "modulation=kml", "modulation.factorization=full"],
    "MProtoNet+KML query modulation": ["learner=protonet", "modulation=kml", "learner.query_modulation=query"],
    "MProtoNet+KML soft refinement": ["learner=protonet", "modulation=kml", "learner.prototype_refinement=soft"],
    "MProtoNet+KML published refinement": ["learner=protonet", "modulation=kml",
                                           "learner.prototype_refinement=published"],
    "MProtoNet+KML joint batch norm": ["learner=protonet", "modulation=kml", "learner.batch_norm=joint"],
    "MProtoNet+KML published protocol": ["learner=protonet", "modulation=kml", "protocol=published"],
    "MProtoNet joint batch norm": ["learner=protonet", "modulation=film", "learner.batch_norm=joint"],
}

ITERATIONS = 3
SEED = 7


def state_hash(module: torch.nn.Module) -> str:
    """sha256 of the state dict: every entry's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def variant_record(cfg, run_dir: Path) -> dict:
    """The initial parameters' hash and count, and the training losses of the first
    :data:`ITERATIONS` iterations (one log line each), of the run ``cfg`` describes."""
    from kml.engine.from_config import build_learner_from_config, tasksets_for
    from kml.engine.trainer import Trainer

    run_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order, whatever the machine's core count
    try:
        tasksets = tasksets_for(cfg, "cpu", seed=SEED)
        torch.manual_seed(SEED)
        learner = build_learner_from_config(cfg)
        record = {"parameters": sum(p.numel() for p in learner.parameters()), "state_sha256": state_hash(learner)}
        trainer = Trainer(cfg, learner, tasksets.train, run_dir, torch.device("cpu"),
                          list(tasksets.train.mode_names), vectorized=True)
        trainer.fit()
    finally:
        torch.set_num_threads(threads)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    record["losses"] = [line["loss"] for line in lines if "loss" in line]
    return record


def overrides(variant: str, data_root: Path) -> list[str]:
    return [*TINY, *VARIANTS[variant], f"data.root={data_root}", f"train.seed={SEED}",
            f"train.iterations={ITERATIONS}", "train.log_every=1", "train.checkpoint_every=1000"]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def test_the_reference_covers_every_variant(reference):
    assert sorted(reference["variants"]) == sorted(VARIANTS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fixed_seed_build_and_first_losses_match_the_recorded_code(variant, reference, compose, synthetic_root,
                                                                   tmp_path):
    expected = reference["variants"][variant]
    got = variant_record(compose(overrides(variant, synthetic_root)), tmp_path)
    assert got["parameters"] == expected["parameters"]
    assert got["state_sha256"] == expected["state_sha256"], f"{variant}: the initial parameters differ"
    assert len(got["losses"]) == ITERATIONS
    torch.testing.assert_close(torch.tensor(got["losses"], dtype=torch.float64),
                               torch.tensor(expected["losses"], dtype=torch.float64), rtol=1e-6, atol=0)


def main(data_root: str) -> None:
    """Write :data:`REFERENCE` from the code of this checkout."""
    import tempfile

    from hydra import compose, initialize_config_dir

    from kml.cli import CONFIG_DIR, register_resolvers
    from kml.config import register_configs

    torch.use_deterministic_algorithms(True, warn_only=True)  # as the test session (conftest.py)
    register_resolvers()
    register_configs()
    variants = {}
    with tempfile.TemporaryDirectory() as work:
        for i, variant in enumerate(VARIANTS):
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                cfg = compose(config_name="config", overrides=overrides(variant, Path(data_root)))
            variants[variant] = variant_record(cfg, Path(work) / str(i))
            print(variant, variants[variant])
    REFERENCE.write_text(json.dumps({"seed": SEED, "iterations": ITERATIONS, "variants": variants}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
