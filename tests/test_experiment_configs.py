"""Named experiments (``experiment=paper/<mixture>_<method>``): one per cell of the paper's
2Mode and 5Mode 1-shot rows, each with the paper's settings; and ``--help`` lists only
the config groups a command accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_engine import TINY
from reliability_support import cli

from kml.cli import CONFIG_DIR
from kml.config import validate
from kml.engine.from_config import specialist_config
from kml.learners import method_name

PAPER_DIR = Path(CONFIG_DIR) / "experiment" / "paper"

#: the paper's mixtures (its datasets, in kml's names)
MIXTURES = {
    "2mode": ["omniglot", "miniimagenet"],
    "5mode": ["omniglot", "miniimagenet", "fc100", "cub", "aircraft"],
}

#: the paper's methods and their published recipes, written out here independently of kml.recipes:
#: method -> (file stem, iterations, meta-batch, lr, scheduler step (0: constant), gamma)
#: Multi-* rows: the specialists' budget per dataset, {dataset: (iterations, meta-batch)} ("*": the others)
MAML = (60000, 10, 1e-3, 0)
PROTONET = (30000, 10, 1e-3, 10000, 0.5)
METHODS = {
    "MAML": ("maml", MAML, None),
    "Multi-MAML": ("multi_maml", MAML, {"omniglot": (60000, 10), "*": (80000, 4)}),
    "MMAML": ("mmaml", MAML, None),
    "MMAML+KML": ("mmaml_kml", MAML, None),
    "ProtoNet": ("protonet", PROTONET, None),
    "Multi-ProtoNet": ("multi_protonet", PROTONET, {"*": (30000, 10)}),
    "MProtoNet": ("mprotonet", PROTONET, None),
    "MProtoNet+KML": ("mprotonet_kml", PROTONET, None),
}
#: the paper's 5-way 1-shot accuracy of each cell, as each file's comment quotes it
ACCURACY = {
    "2mode": {"MAML": "65.18", "Multi-MAML": "66.77", "MMAML": "67.67", "MMAML+KML": "68.01",
              "ProtoNet": "69.55", "Multi-ProtoNet": "70.17", "MProtoNet": "70.60", "MProtoNet+KML": "73.69"},
    "5mode": {"MAML": "47.19", "Multi-MAML": "48.33", "MMAML": "49.53", "MMAML+KML": "50.31",
              "ProtoNet": "49.31", "Multi-ProtoNet": "50.69", "MProtoNet": "51.75", "MProtoNet+KML": "56.72"},
}
CELLS = [(mixture, method) for mixture in MIXTURES for method in METHODS]


def test_there_is_one_experiment_per_cell_and_no_other():
    assert sorted(p.name for p in PAPER_DIR.glob("*.yaml")) == sorted(
        f"{mixture}_{METHODS[method][0]}.yaml" for mixture, method in CELLS)


@pytest.mark.parametrize("mixture, method", CELLS)
def test_an_experiment_has_the_papers_settings(compose, mixture, method):
    stem, budget, specialists = METHODS[method]
    name = f"paper/{mixture}_{stem}"
    text = (PAPER_DIR / f"{mixture}_{stem}.yaml").read_text()
    # its comment names the table and the cell, and says where our data differs
    family = "MAML" if "MAML" in method else "ProtoNet"
    assert f"table of the {family} family, row {mixture[0]}Mode 1-shot" in text
    assert f"column {method}: {ACCURACY[mixture][method]} " in text
    assert "Where our data differs" in text

    cfg = compose([f"experiment={name}"])
    validate(cfg)
    assert list(cfg.mode.datasets) == MIXTURES[mixture]
    assert method_name(cfg.learner.name, cfg.modulation.name, bool(cfg.multi)) == method
    assert (cfg.episode.ways, cfg.episode.shots, cfg.episode.queries) == (5, 1, 15)
    assert cfg.data.image_size == 84
    assert cfg.protocol.name == "paper"
    iterations, meta_batch, lr, step, *gamma = budget
    assert (cfg.train.iterations, cfg.train.meta_batch_size, cfg.train.lr) == (iterations, meta_batch, lr)
    assert cfg.train.scheduler.step_size == step
    if gamma:
        assert cfg.train.scheduler.gamma == gamma[0]
    assert cfg.eval.tasks_per_mode >= 1000 and cfg.eval.checkpoint == "last"
    for dataset in MIXTURES[mixture] if specialists else ():
        own = specialist_config(cfg, dataset).train
        assert (own.iterations, own.meta_batch_size) == specialists.get(dataset, specialists["*"]), dataset


def test_an_experiment_runs_and_the_command_line_still_wins(synthetic_root, tmp_path):
    """``experiment=`` sets the run; choices on the command line override it (here: the
    embedded data and a short budget instead of the paper's mixture and 60k iterations)."""
    result = cli("train.py", "experiment=paper/2mode_mmaml_kml", "debug=fast", "mode=synthetic",
                 f"data.root={synthetic_root}", *[o for o in TINY if o.startswith(("data.", "learner.b", "modulation",
                                                                                     "episode"))],
                 "train.progress=false", "hydra.run.dir=run", cwd=tmp_path)
    assert result.code == 0, result.err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["method"] == "MMAML+KML" and results["iterations"] == {"all": 4}


def _help_groups(script: str, tmp_path) -> dict[str, list[str]]:
    result = cli(script, "--help", cwd=tmp_path)
    assert result.code == 0, result.err
    section = result.out.split("== Configuration groups ==")[1].split("== Config ==")[0].split("== Declared")[0]
    lines = [line for line in section.splitlines()[2:] if ": " in line and not line.startswith("(none")]
    return {line.split(": ")[0]: line.split(": ")[1].split(", ") for line in lines}


def test_help_lists_only_the_groups_a_command_accepts(tmp_path):
    train = _help_groups("train.py", tmp_path)
    assert list(train) == ["learner", "modulation", "protocol", "mode", "logger", "experiment", "debug"]
    assert "campaign" not in train  # kml-train refuses campaign=...
    assert "paper/5mode_mprotonet_kml" in train["experiment"] and train["debug"] == ["fast", "overfit"]
    assert list(_help_groups("reproduce.py", tmp_path)) == ["campaign"]
    for script in ("eval.py", "prepare_data.py"):  # (compare, transference and bench have the same defaults)
        assert _help_groups(script, tmp_path) == {}, script
    out = cli("train.py", "--help", cwd=tmp_path).out
    assert out.splitlines()[0].startswith("python scripts/train.py: ")  # the command as this user runs it
    # each learner's declared options, with their types and defaults, under the learner that has them
    declared = out.split("== Declared options")[1].split("== Config ==")[0]
    maml, protonet = declared.split("learner=maml:")[1].split("learner=protonet:")
    assert "learner.inner_steps: int = 5" in maml and "learner.inner_steps" not in protonet
    assert "learner.prototype_refinement: str = 'none'" in protonet
    assert "modulation.rank: int = 1" in declared
