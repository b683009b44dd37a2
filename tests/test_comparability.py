"""Runs stay comparable with the recorded ones: for every method and protocol option, a
fixed-seed build from the run config gives the same initial parameters and a tiny
training run the same first losses as the code the committed records were trained with.

Portable by construction: the variants are built and trained in float64 (the
parameters drawn in float64, the episodes cast to it), on one thread, and compared
with :data:`REFERENCE` within tolerances that other CPUs' kernels (SIMD widths,
reduction orders, ``ATEN_CPU_CAPABILITY``) and thread counts stay far inside, while any
change of the model, the data order or the initialisation moves the numbers by many
orders of magnitude more:

- the initial parameters: each tensor's name, shape and four sums (plain, absolute,
  squared, and weighted by a fixed sign pattern, which a permutation moves), relative
  ``1e-9`` of its absolute sum;
- the losses of the first :data:`ITERATIONS` iterations: relative ``1e-8``.

The reference values in ``comparability_reference.json`` were written by this
module's ``main`` (``python tests/test_comparability.py <data root of the 16x16
synthetic modes>``) from the code that trained the committed records (checked
against float32 references recorded from that code before the change to float64); do
not regenerate them to make a change pass. ``python tests/test_comparability.py
<root> --add`` records only variants the file does not have yet.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fixtures_engine import TINY, TINY_MAML

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
    # the published protocol as it was before it gained the published init (pinned option by option)
    "MProtoNet+KML published protocol": ["learner=protonet", "modulation=kml", "learner.query_modulation=query",
                                         "learner.prototype_refinement=published", "learner.batch_norm=separate",
                                         "modulation.identity=false", "modulation.factorization=published"],
    "MProtoNet+KML complete published protocol": ["learner=protonet", "modulation=kml", "protocol=published"],
    "MProtoNet joint batch norm": ["learner=protonet", "modulation=film", "learner.batch_norm=joint"],
}

ITERATIONS = 3
SEED = 7
#: relative tolerances (see the module docstring)
INIT_RTOL = 1e-9
LOSS_RTOL = 1e-8


def tensor_sums(tensor: torch.Tensor) -> list[float]:
    """``[sum, sum |x|, sum x², sum s_i x_i]`` of a tensor in float64, ``s_i`` a fixed
    pattern of signs (``+1`` where ``i mod 3 == 0`` or ``i mod 7 == 0``, else ``-1``), so
    that the same values in another order give another last sum."""
    flat = tensor.detach().cpu().to(torch.float64).reshape(-1)
    index = torch.arange(flat.numel())
    signs = torch.where((index % 3 == 0) | (index % 7 == 0), 1.0, -1.0).to(torch.float64)
    return [float(flat.sum()), float(flat.abs().sum()), float((flat * flat).sum()), float((flat * signs).sum())]


def state_summary(module: torch.nn.Module) -> dict[str, dict]:
    """Every state-dict entry: ``{"shape", "dtype", "sums"}`` (:func:`tensor_sums`)."""
    return {
        name: {"shape": list(tensor.shape), "dtype": str(tensor.dtype), "sums": tensor_sums(tensor)}
        for name, tensor in module.state_dict().items()
    }


class _Float64Episodes:
    """A sampler whose episodes' images are float64 (labels and the rest unchanged)."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def _cast(self, batch):
        return replace(batch, support=batch.support.double(), query=batch.query.double())

    def sample(self, num_tasks: int):
        return self._cast(self.sampler.sample(num_tasks))

    def sample_mode(self, mode: str, num_tasks: int):
        return self._cast(self.sampler.sample_mode(mode, num_tasks))

    def __getattr__(self, name):
        return getattr(self.sampler, name)


def variant_record(cfg, run_dir: Path) -> dict:
    """The initial parameters (:func:`state_summary`) and the training losses of the
    first :data:`ITERATIONS` iterations (one log line each) of the run ``cfg``
    describes, all in float64 on one thread."""
    from kml.engine.from_config import build_learner_from_config, tasksets_for
    from kml.engine.trainer import Trainer

    run_dir.mkdir(parents=True, exist_ok=True)
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # parameters drawn in float64
    try:
        tasksets = tasksets_for(cfg, "cpu", seed=SEED)
        torch.manual_seed(SEED)
        learner = build_learner_from_config(cfg)
        record = {"parameters": sum(p.numel() for p in learner.parameters()), "state": state_summary(learner)}
        trainer = Trainer(cfg, learner, _Float64Episodes(tasksets.train), run_dir, torch.device("cpu"), vectorized=True)
        trainer.fit()
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    record["losses"] = [line["loss"] for line in lines if "loss" in line]
    return record


def overrides(variant: str, data_root: Path) -> list[str]:
    maml = TINY_MAML if "learner=maml" in VARIANTS[variant] else []  # the references were recorded with it
    return [*TINY, *maml, *VARIANTS[variant], f"data.root={data_root}", f"train.seed={SEED}",
            f"train.iterations={ITERATIONS}", "train.log_every=1", "train.checkpoint_every=1000"]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def test_the_reference_covers_every_variant(reference):
    assert sorted(reference["variants"]) == sorted(VARIANTS)


def assert_same_state(got: dict, expected: dict, variant: str) -> None:
    assert list(got) == list(expected), f"{variant}: the parameter names or their order differ"
    for name, entry in expected.items():
        assert got[name]["shape"] == entry["shape"] and got[name]["dtype"] == entry["dtype"], f"{variant}: {name}"
        scale = entry["sums"][1] + 1e-300  # every sum is bounded by the absolute sum
        for value, want in zip(got[name]["sums"], entry["sums"]):
            assert abs(value - want) <= INIT_RTOL * scale, f"{variant}: the initial {name} differs"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fixed_seed_build_and_first_losses_match_the_recorded_code(variant, reference, compose, synthetic_root,
                                                                   tmp_path):
    expected = reference["variants"][variant]
    got = variant_record(compose(overrides(variant, synthetic_root)), tmp_path)
    assert got["parameters"] == expected["parameters"]
    assert_same_state(got["state"], expected["state"], variant)
    assert len(got["losses"]) == ITERATIONS
    torch.testing.assert_close(torch.tensor(got["losses"], dtype=torch.float64),
                               torch.tensor(expected["losses"], dtype=torch.float64), rtol=LOSS_RTOL, atol=0)


def test_the_weighted_sum_tells_a_permutation_apart():
    """The init check would miss values moved between positions (a transposed or
    reordered weight) if every sum were order-free: the signed sum is not."""
    torch.manual_seed(0)
    weight = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    sums, permuted = tensor_sums(weight), tensor_sums(weight.flip(0))
    assert max(abs(a - b) for a, b in zip(sums[:3], permuted[:3])) <= INIT_RTOL * sums[1]
    assert abs(sums[3] - permuted[3]) > 1e3 * INIT_RTOL * sums[1]


def main(data_root: str, add_only: bool = False) -> None:
    """Write :data:`REFERENCE` from the code of this checkout (``add_only``: keep the
    variants it has and record only the missing ones)."""
    import tempfile

    from hydra import compose, initialize_config_dir

    from kml.cli import CONFIG_DIR, register_resolvers
    from kml.config import register_configs

    torch.use_deterministic_algorithms(True, warn_only=True)  # as the test session (conftest.py)
    register_resolvers()
    register_configs()
    variants = json.loads(REFERENCE.read_text())["variants"] if add_only and REFERENCE.is_file() else {}
    with tempfile.TemporaryDirectory() as work:
        for i, variant in enumerate(VARIANTS):
            if variant in variants:
                continue
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                cfg = compose(config_name="config", overrides=overrides(variant, Path(data_root)))
            variants[variant] = variant_record(cfg, Path(work) / str(i))
            print(variant, variants[variant]["parameters"], variants[variant]["losses"])
    ordered = {name: variants[name] for name in VARIANTS}
    REFERENCE.write_text(json.dumps({"seed": SEED, "iterations": ITERATIONS, "dtype": "float64",
                                     "variants": ordered}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], add_only="--add" in sys.argv[2:])
