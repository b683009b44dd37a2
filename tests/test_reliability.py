"""Reliability and safety, part 1: every bad input gets one clear ``error:``
line, a non-zero exit and no traceback, and loses nothing written before; safe
checkpoints; reproducible runs. Signals and kills are in test_reliability_faults.py.

Entry points run in this process through :func:`reliability_support.cli` (the same
``sys.argv`` -> Hydra -> ``main_guard`` path as the command line, without a Python
start-up per case); one case runs as a real subprocess to prove what a terminal shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_engine import run_script
from reliability_support import REPO, TINY, TINY_MAML, cli, final_parameters, same_parameters

import kml
from kml.cli import CONFIG_DIR
from kml.config import LearnerConfig, RunConfig, TrainConfig
from kml.engine.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from kml.learners import ProtoNetOptions

MODES = sorted(p.stem for p in (Path(CONFIG_DIR) / "mode").glob("*.yaml"))


def _keys(schema) -> str:
    return ", ".join(f.name for f in dataclasses.fields(schema))


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from kml.cli import CONFIG_DIR, register_resolvers
    from kml.config import register_configs

    register_resolvers()
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _train(run_dir: Path, *overrides: str) -> dict:
    from kml.engine.runs import run_training

    return run_training(_compose(list(overrides)), run_dir, log=lambda *a: None)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), but Hydra's appended log and
    the run lock (which names the process holding it)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("train.log", ".lock")
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root) -> Path:
    """A finished tiny MProtoNet+KML run of scripts/train.py (checkpoints at iterations 2 and 4)."""
    run_dir = tmp_path_factory.mktemp("reliability") / "run"
    result = cli("train.py", f"data.root={synthetic_root}", *TINY, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.code == 0, result.err
    return run_dir


@pytest.fixture(scope="module")
def other_method(tmp_path_factory, synthetic_root) -> Path:
    """A finished tiny plain-MAML run: its checkpoints do not fit ``trained``."""
    run_dir = tmp_path_factory.mktemp("reliability-maml") / "run"
    _train(run_dir, "learner=maml", "modulation=none", f"data.root={synthetic_root}", *TINY, *TINY_MAML,
           "train.iterations=2")
    return run_dir


def _assert_user_error(result, message: str, code: int = 1) -> None:
    """Exactly one ``error: <message>`` line on stderr, the exit status, no traceback."""
    assert result.code == code, (result.code, result.err)
    assert result.err == f"error: {message}\n", result.err
    assert "Traceback" not in result.out + result.err


# ----------------------------------------------------------------- config errors
def test_unknown_key_in_a_real_terminal(tmp_path):
    """The whole command line in a subprocess: one line, exit 1, nothing created."""
    proc = run_script("train.py", "train.iteratons=5", cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == (
        "error: unknown config key 'train.iteratons' (did you mean train.iterations?); "
        f"valid keys of train: {_keys(TrainConfig)}\n"
    )
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no run directory for a config error


@pytest.mark.parametrize(
    "override,message",
    [
        ("mode=foo", f"mode=foo is not a known option; valid options for mode: {', '.join(MODES)}"),
        ("learner=reptile", "learner=reptile is not a known option; valid options for learner: maml, protonet"),
        ("modulation=kmll", "modulation=kmll is not a known option; valid options for modulation: film, kml, none"),
        ("trian.iterations=5", "unknown config key 'trian.iterations' (did you mean train?); "
         f"valid keys at the top level: {_keys(RunConfig)}"),
        ("learner.batchnorm=joint", "unknown config key 'learner.batchnorm' (did you mean learner.batch_norm?); "
         f"valid keys of learner (protonet): {_keys(LearnerConfig)}, {_keys(ProtoNetOptions)}"),
        ("+train.iteratons=5", "unknown config key 'train.iteratons' (did you mean train.iterations?); "
         f"valid keys of train: {_keys(TrainConfig)}; remove it (a '+key=value' override adds keys)"),
        ("episode.ways=five", "invalid value in episode.ways=five: Value 'five' of type 'str' could not be converted "
         "to Integer; pass a value of the key's type"),
        ("episode.ways", "cannot parse the override 'episode.ways': missing EQUAL at '<EOF>'; "
         "write overrides as key=value (e.g. train.iterations=100)"),
        ("train.iterations=${foo}", "config value train.iterations cannot be resolved "
         "(Interpolation key 'foo' not found); fix or remove that override"),
    ],
)
def test_config_errors_name_the_valid_choices(tmp_path, override, message):
    result = cli("train.py", override, "hydra.run.dir=run", cwd=tmp_path)
    _assert_user_error(result, message)
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.parametrize(
    "override,message",
    [
        ("episode.ways=1", "episode.ways=1 is out of range: it must be >= 2"),
        ("episode.shots=0", "episode.shots=0 is out of range: it must be >= 1"),
        ("episode.queries=0", "episode.queries=0 is out of range: it must be >= 1"),
        ("train.lr=0", "train.lr=0.0 is out of range: it must be > 0"),
        ("train.lr=-0.001", "train.lr=-0.001 is out of range: it must be > 0"),
        ("train.lr=nan", "train.lr=nan is not a finite number; pass a number > 0"),
        ("train.lr_modulation=-1", "train.lr_modulation=-1.0 is out of range: it must be > 0"),
        ("learner.inner_lr=0", "learner.inner_lr=0.0 is out of range: it must be > 0"),
        ("learner.inner_lr=-0.5", "learner.inner_lr=-0.5 is out of range: it must be > 0"),
        ("learner.inner_steps=-1", "learner.inner_steps=-1 is out of range: it must be >= 0"),
        ("train.meta_batch_size=0", "train.meta_batch_size=0 is out of range: it must be >= 1"),
        ("train.iterations=0", "train.iterations=0 is out of range: it must be >= 1"),
        ("eval.split=dev", "eval.split='dev' is not valid; use one of: train, val, test"),
        ("train.cuda_graphs=sometimes", "train.cuda_graphs='sometimes' is not valid; use one of: auto, true, false"),
    ],
)
def test_out_of_range_values_are_refused_before_anything_is_written(tmp_path, override, message):
    result = cli("train.py", "learner=maml", override, "hydra.run.dir=run", cwd=tmp_path)
    _assert_user_error(result, message)
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu(tmp_path):
    result = cli("train.py", "device=cuda", "hydra.run.dir=run", cwd=tmp_path)
    _assert_user_error(
        result, "device=cuda was requested but no CUDA GPU is available; use device=cpu (or device=auto)"
    )
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_cuda_graphs_on_cpu(tmp_path):
    result = cli("train.py", "device=cpu", "train.cuda_graphs=true", "hydra.run.dir=run", cwd=tmp_path)
    _assert_user_error(result, "train.cuda_graphs=true needs a CUDA device, but this run is on cpu; "
                               "use train.cuda_graphs=auto (or false) or device=cuda")
    assert not (tmp_path / "run" / "config.yaml").exists()


# ------------------------------------------------------------------ data errors
def test_dataset_not_prepared(tmp_path):
    root = tmp_path / "data"
    result = cli("train.py", "mode=omniglot", f"data.root={root}", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    _assert_user_error(
        result,
        f"dataset 'omniglot' is not prepared at {root}/omniglot/16; run: "
        f"python scripts/prepare_data.py dataset=omniglot data.root={root} image_size=16",
    )
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_every_unprepared_dataset_of_a_mixture_is_named_at_once(tmp_path):
    root = tmp_path / "data"
    result = cli("train.py", "mode=5mode", f"data.root={root}", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    command = "python scripts/prepare_data.py dataset={} data.root=" + f"{root} image_size=16"
    _assert_user_error(
        result,
        f"5 datasets of this mixture are not prepared in {root} (omniglot, miniimagenet, fc100, cub, aircraft); run: "
        + "; ".join(command.format(name) for name in ("omniglot",)) + "; "
        + command.format("miniimagenet") + " source=<folder holding the files>; "
        + "; ".join(command.format(name) for name in ("fc100", "cub", "aircraft")),
    )
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_data_root_that_is_a_file(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("")
    for root in (afile, afile / "below"):
        result = cli("train.py", f"data.root={root}", *TINY, "hydra.run.dir=run", cwd=tmp_path)
        where = "is a file" if root == afile else f"is under {afile}, which is a file"
        _assert_user_error(
            result,
            f"data.root={root} {where}, not a folder; pass the folder that holds (or will hold) the prepared "
            "datasets, e.g. data.root=data",
        )
    assert afile.read_text() == "" and not (tmp_path / "run" / "config.yaml").exists()


@pytest.fixture
def aircraft_root(tmp_path, data_builders) -> Path:
    """FGVC-Aircraft prepared at 16 px from a tiny official-layout archive."""
    from kml.data import prepare_dataset

    archive = data_builders.aircraft(tmp_path / "src", per_class=2)
    prepare_dataset("aircraft", tmp_path / "data", 16, source=archive, verbose=False)
    return tmp_path / "data"


def test_partial_prepared_dataset_counts_as_not_prepared(tmp_path, aircraft_root):
    folder = aircraft_root / "aircraft" / "16"
    (folder / "manifest.json").unlink()  # e.g. a copy that stopped half-way
    result = cli("train.py", "mode=aircraft", f"data.root={aircraft_root}", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    _assert_user_error(
        result,
        f"dataset 'aircraft' is not prepared at {folder}; run: "
        f"python scripts/prepare_data.py dataset=aircraft data.root={aircraft_root} image_size=16",
    )


def test_truncated_prepared_array(tmp_path, aircraft_root):
    array = aircraft_root / "aircraft" / "16" / "train.npy"
    array.write_bytes(array.read_bytes()[:200])
    result = cli("train.py", "mode=aircraft", f"data.root={aircraft_root}", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.startswith(f"error: prepared file {array} is unreadable (")
    assert result.err.endswith(
        f"); prepare it again: python scripts/prepare_data.py dataset=aircraft data.root={aircraft_root} "
        "image_size=16 force=true\n"
    )
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_empty_prepared_dataset(tmp_path):
    from kml.data.storage import Manifest, SplitInfo, write_manifest

    root = tmp_path / "data"
    folder = root / "aircraft" / "16"
    folder.mkdir(parents=True)
    for split in ("train", "val", "test"):
        np.save(folder / f"{split}.npy", np.zeros((0, 16, 16, 3), dtype=np.uint8))
    empty = {split: SplitInfo([], []) for split in ("train", "val", "test")}
    write_manifest(folder, Manifest("aircraft", 16, 3, "seeded", 0, empty))
    result = cli("train.py", "mode=aircraft", f"data.root={root}", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    _assert_user_error(
        result,
        "the train split of aircraft has no classes (empty prepared dataset); prepare it again with "
        f"python scripts/prepare_data.py dataset=aircraft data.root={root} image_size=16 force=true, "
        "or choose another mode",
    )


def test_ways_larger_than_a_split(tmp_path, synthetic_root):
    result = cli("train.py", f"data.root={synthetic_root}", *TINY, "episode.ways=50", "hydra.run.dir=run", cwd=tmp_path)
    _assert_user_error(
        result,
        "50-way tasks need 50 classes but split 'val' of synthetic_glyphs has 45; "
        "lower episode.ways to at most 45 or use another split/dataset",
    )
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_shots_plus_queries_larger_than_a_class(tmp_path, synthetic_root):
    result = cli("train.py", f"data.root={synthetic_root}", *TINY, "episode.queries=25", "hydra.run.dir=run",
                 cwd=tmp_path)
    _assert_user_error(
        result,
        "shots + queries = 26 but class 'glyphs0000' of split 'train' of synthetic_glyphs has only 20 images; "
        "lower episode.shots/episode.queries or sample with replacement (data.replacement=true)",
    )


def test_corrupted_image_in_the_source(tmp_path, data_builders):
    archive = data_builders.aircraft(tmp_path / "src", per_class=2, corrupt="1000010")
    root = tmp_path / "data"
    result = cli("prepare_data.py", "dataset=aircraft", f"source={archive}", f"data.root={root}", "image_size=16",
                 "verbose=false", cwd=tmp_path)
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.startswith("error: corrupted or unreadable image 'fgvc-aircraft-2013b/data/images/1000010.jpg' (")
    assert "BytesIO" not in result.err and "not a recognised image format" in result.err
    assert result.err.endswith("); replace that file (or download the archive again) and rerun the preparation\n")
    assert not (root / "aircraft" / "16").exists()


def test_corrupted_archive(tmp_path, data_builders):
    archive = data_builders.aircraft(tmp_path / "src", per_class=2)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    root = tmp_path / "data"
    result = cli("prepare_data.py", "dataset=aircraft", f"source={archive}", f"data.root={root}", "image_size=16",
                 "verbose=false", cwd=tmp_path)
    assert result.code == 1
    assert result.err == (
        f"error: cannot extract {archive} (Compressed file ended before the end-of-stream marker was reached); "
        "the archive is corrupt: download it again\n"
    )
    assert not (root / "aircraft" / "16").exists()


# ------------------------------------------------------------------ checkpoints
def _eval(run_dir: Path, checkpoint, cwd: Path):
    return cli("eval.py", f"run_dir={run_dir}", f"checkpoint={checkpoint}", "device=cpu", "progress=false", cwd=cwd)


def test_checkpoint_that_does_not_exist(tmp_path, trained):
    _assert_user_error(
        _eval(trained, 99, tmp_path), f"{trained} has no checkpoint at iteration 99; available iterations: 2, 4"
    )
    missing = tmp_path / "nowhere.pt"
    _assert_user_error(
        _eval(trained, missing, tmp_path),
        f"checkpoint {missing} does not exist; pass an existing file (see {tmp_path}/)",
    )
    _assert_user_error(
        cli("eval.py", f"run_dir={tmp_path}", cwd=tmp_path),
        f"{tmp_path} is not a kml run directory (config.yaml is missing); "
        "pass the output folder of python scripts/train.py",
    )


def test_truncated_checkpoint(tmp_path, trained):
    truncated = tmp_path / "truncated.pt"
    data = (trained / "checkpoints" / "last.pt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = _eval(trained, truncated, tmp_path)
    # the reason in brackets is the PyTorch reader's own first sentence, which depends on where the file ends
    pattern = (rf"error: checkpoint {re.escape(str(truncated))} is truncated or corrupt \([^\n]+\); use another "
               rf"checkpoint of the run, e.g. an earlier iter_\*\.pt in {re.escape(str(tmp_path))}/\n")
    assert result.code == 1 and re.fullmatch(pattern, result.err), result.err
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _assert_user_error(
        _eval(trained, empty, tmp_path),
        f"checkpoint {empty} is empty (truncated); use another checkpoint of the run, "
        f"e.g. an earlier iter_*.pt in {tmp_path}/",
    )


def test_file_that_is_not_a_checkpoint(tmp_path, trained):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    _assert_user_error(
        _eval(trained, text, tmp_path),
        f"{text} is not a kml checkpoint (not a PyTorch file); pass a file from a run's checkpoints/ folder",
    )
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, foreign)
    _assert_user_error(
        _eval(trained, foreign, tmp_path),
        f"{foreign} is not a kml checkpoint (no '{CHECKPOINT_FORMAT}' marker); "
        "pass a file from a run's checkpoints/ folder",
    )


def test_checkpoint_of_another_method_names_the_differing_keys(tmp_path, trained, other_method):
    foreign = other_method / "checkpoints" / "last.pt"
    result = _eval(trained, foreign, tmp_path)
    _assert_user_error(
        result,
        f"checkpoint {foreign} does not match this model (it was saved by MAML but this run is MProtoNet+KML; "
        "missing keys backbone.blocks.0.bn.bias, backbone.blocks.0.bn.weight, "
        "backbone.blocks.0.conv.generator.g1.0.bias, backbone.blocks.0.conv.generator.g1.0.weight and 46 more; "
        "unexpected keys backbone.head.bias, backbone.head.weight); "
        "it belongs to a different architecture or method: use a checkpoint of this run, or this run's own config",
    )


def test_resume_from_a_truncated_last_checkpoint_says_how_to_recover(tmp_path, trained):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    before = _snapshot(run)
    result = cli("train.py", f"resume={run}", "train.iterations=6", cwd=tmp_path)
    _assert_user_error(
        result,
        f"cannot resume: checkpoint {last} is truncated or corrupt (PytorchStreamReader failed reading zip archive: "
        "failed finding central directory); to resume from the latest numbered checkpoint instead, run: "
        f"cp {run}/checkpoints/iter_00000004.pt {last}",
    )
    after = _snapshot(run)
    for name in ("results.json", "checkpoints/last.pt", "checkpoints/iter_00000004.pt", "metrics.jsonl"):
        assert after[name] == before[name], name
    shutil.copy(run / "checkpoints" / "iter_00000004.pt", last)  # the advice works
    assert cli("train.py", f"resume={run}", "train.iterations=6", cwd=tmp_path).code == 0
    assert load_checkpoint(last)["iteration"] == 6


def test_resume_refuses_another_config_and_non_runs(tmp_path, trained):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = _snapshot(run)
    _assert_user_error(
        cli("train.py", f"resume={run}", "episode.shots=2", "learner.backbone.channels=[8,8,8,16]", cwd=tmp_path),
        "resume points at a run with a different config: episode.shots is 1 in the run but 2 now; "
        "learner.backbone.channels is [4, 6, 6, 8] in the run but [8, 8, 8, 16] now. "
        "Drop these overrides to resume it, or start a new run without resume=",
    )
    assert {k: v for k, v in _snapshot(run).items() if not k.startswith(".hydra_resume")} == before
    nowhere = tmp_path / "nowhere"
    _assert_user_error(
        cli("train.py", f"resume={nowhere}", cwd=tmp_path),
        f"resume={nowhere} is not a kml run directory (no config.yaml); "
        "pass the folder that python scripts/train.py printed",
    )


def test_a_run_directory_in_use_is_refused(tmp_path, trained):
    """Two processes writing one run (a resume of a run that is still going, or the same
    hydra.run.dir twice) would interleave checkpoints: the second one is refused."""
    from kml.engine.rundir import RunLock

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    lock = RunLock(run).acquire()  # as a running training holds it
    try:
        result = cli("train.py", f"resume={run}", "train.iterations=6", cwd=tmp_path)
        owner = (run / ".lock").read_text().strip()
        _assert_user_error(
            result,
            f"{run} is in use by another run ({owner}); wait for it to finish (or stop it), "
            "or choose another output directory",
        )
        assert owner.startswith("pid ")
    finally:
        lock.release()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 4  # untouched


# ---------------------------------------------------------------- nothing lost
def test_a_refused_run_never_overwrites_an_existing_run(tmp_path, trained, synthetic_root):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = _snapshot(run)
    result = cli("train.py", f"data.root={synthetic_root}", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    _assert_user_error(
        result,
        f"{run} already holds a run (config.yaml exists); pass resume={run} to continue it, "
        "or choose another output directory",
    )
    after = _snapshot(run)
    # Hydra's record of the refused command went to a fresh .hydra_2/, everything else is unchanged
    assert {k for k in after if k not in before} == {".hydra_2/config.yaml", ".hydra_2/hydra.yaml",
                                                     ".hydra_2/overrides.yaml"}
    assert all(after[k] == before[k] for k in before)


def test_eval_never_overwrites_results_json_by_default(tmp_path, trained):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "results.json").read_bytes()
    result = _eval(run, 2, tmp_path)
    assert result.code == 0, result.err
    assert (run / "results.json").read_bytes() == before
    assert json.loads((run / "eval_2_test.json").read_text())["iterations"] == {"all": 2}


def test_unwritable_outputs(tmp_path, trained):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    _assert_user_error(
        cli("train.py", f"hydra.run.dir={blocker}/run", cwd=tmp_path),
        f"cannot create the run directory {blocker}/run (Not a directory); "
        "choose a writable place with hydra.run.dir=/path/to/run (or run from a writable folder)",
    )
    _assert_user_error(
        cli("eval.py", f"run_dir={trained}", f"output={blocker}/eval.json", "progress=false", cwd=tmp_path),
        f"output directory {blocker} is not writable (File exists); pass output=/a/writable/place/eval.json",
    )
    _assert_user_error(
        cli("compare.py", f"run_dirs=[{trained}]", f"output={blocker}/table.md", cwd=tmp_path),
        f"cannot write {blocker}/table.md: {blocker} is a file, not a folder; choose another location",
    )


def _read_only(folder: Path):
    """Make ``folder`` read-only for this process: chmod for a normal user; for root, who
    ignores permission bits, the immutable attribute (chattr +i). Returns an undo function,
    or None where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        return None
    return lambda: subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    undo = _read_only(folder)
    if undo is None:
        pytest.skip("cannot make a folder read-only for root here (no chattr +i on this file system)")
    try:
        result = cli("train.py", f"hydra.run.dir={folder}/run", cwd=tmp_path)
    finally:
        undo()
    reason = "Permission denied" if os.geteuid() != 0 else "Operation not permitted"
    _assert_user_error(
        result,
        f"cannot create the run directory {folder}/run ({reason}); "
        "choose a writable place with hydra.run.dir=/path/to/run (or run from a writable folder)",
    )
    assert not (folder / "run").exists()


# --------------------------------------------------------------- NaN / infinity
def _poison(monkeypatch, at_call: int, where: str) -> None:
    """Make the learner's loss (``where="loss"``) or only its gradients (``"grad"``)
    NaN at the ``at_call``-th training forward pass."""
    import kml.engine.runs as runs

    build = runs.build_learner_from_config

    def poisoned_build(cfg, *args, **kwargs):
        learner = build(cfg, *args, **kwargs)
        forward, calls = learner.forward, [0]

        def poisoned_forward(*a, **k):
            out = forward(*a, **k)
            if learner.training:
                calls[0] += 1
                if calls[0] == at_call:
                    if where == "loss":
                        out = dataclasses.replace(out, task_losses=out.task_losses * float("nan"))
                    else:
                        out.task_losses.register_hook(lambda g: g * float("nan"))
            return out

        learner.forward = poisoned_forward
        return learner

    monkeypatch.setattr(runs, "build_learner_from_config", poisoned_build)


def test_nan_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_root, monkeypatch):
    _poison(monkeypatch, at_call=3, where="loss")
    run = tmp_path / "run"
    result = cli("train.py", "learner=maml", f"data.root={synthetic_root}", *TINY, *TINY_MAML, "train.iterations=6",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    last = run / "checkpoints" / "last.pt"
    _assert_user_error(
        result,
        f"the meta-loss became NaN or infinite at iteration 3; the last good checkpoint is {last}; no results were "
        "written. Lower train.lr or learner.inner_lr (or set learner.grad_clip) and start again",
    )
    assert not (run / "results.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_00000002.pt", "last.pt"]
    state = load_checkpoint(last)
    assert state["iteration"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_nan_parameters_after_a_finite_loss_are_never_checkpointed(tmp_path, synthetic_root, monkeypatch):
    _poison(monkeypatch, at_call=2, where="grad")  # loss of iteration 2 finite, its update NaN
    run = tmp_path / "run"
    result = cli("train.py", "learner=maml", f"data.root={synthetic_root}", *TINY, *TINY_MAML, "train.iterations=6",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.code == 1
    assert result.err.startswith("error: the parameters became NaN or infinite at iteration 2 "
                                 "(backbone.blocks.0.conv.weight")
    assert result.err.endswith("; no checkpoint had been saved yet; no results were written. Lower train.lr or "
                               "learner.inner_lr (or set learner.grad_clip) and start again\n")
    assert not (run / "checkpoints").exists() and not (run / "results.json").exists()


def test_divergent_learning_rate_is_reported(tmp_path, synthetic_root):
    run = tmp_path / "run"
    result = cli("train.py", "learner=maml", f"data.root={synthetic_root}", *TINY, *TINY_MAML, "train.lr=1e30",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    _assert_user_error(
        result,
        "the meta-loss became NaN or infinite at iteration 2; no checkpoint had been saved yet; no results were "
        "written. Lower train.lr or learner.inner_lr (or set learner.grad_clip) and start again",
    )
    assert not (run / "results.json").exists()


# -------------------------------------------------------------------- security
def _malicious_checkpoint(path: Path, marker: Path) -> None:
    """A checkpoint-looking file whose unpickling would create ``marker``."""

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": CHECKPOINT_FORMAT, "iteration": 4, "model": {"w": Payload()}}, path)


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path, trained):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    _malicious_checkpoint(evil, marker)
    # the file really is malicious: an unsafe load runs the payload
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(evil)!r}, weights_only=False)"], check=False,
                   capture_output=True, timeout=120)
    assert marker.exists()
    marker.unlink()

    refusal = (
        "was refused and nothing in it was run: loading it would call or import io.open, but a checkpoint may only "
        "hold tensors and plain data (it is malicious or from another program); load only checkpoints written by kml"
    )
    _assert_user_error(_eval(trained, evil, tmp_path), f"checkpoint {evil} {refusal}")
    assert not marker.exists()
    # planted as the last.pt of a run that is then resumed
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    shutil.copy(evil, run / "checkpoints" / "last.pt")
    _assert_user_error(
        cli("train.py", f"resume={run}", "train.iterations=6", cwd=tmp_path),
        f"cannot resume: checkpoint {run / 'checkpoints' / 'last.pt'} {refusal}",
    )
    assert not marker.exists()


def test_archive_with_path_traversal_is_refused(tmp_path, data_builders):
    import zipfile

    archive = data_builders.tinyimagenet(tmp_path / "src", classes=5, per_class=3)
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../evil.txt", "gotcha")
    root = tmp_path / "work" / "data"
    result = cli("prepare_data.py", "dataset=tinyimagenet", f"source={archive}", f"data.root={root}", "image_size=16",
                 "verbose=false", cwd=tmp_path)
    assert result.code == 1
    assert result.err == (
        f"error: refusing archive member '../../evil.txt' in {archive}: '..' leaves the extraction folder "
        "(path traversal); use an untampered copy of the official archive\n"
    )
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (root / "tinyimagenet" / "16").exists()


# ------------------------------------------------------------- reproducibility
def test_same_seed_same_run(tmp_path, synthetic_root):
    args = ["learner=maml", f"data.root={synthetic_root}", *TINY, *TINY_MAML, "train.log_every=1"]
    first = _train(tmp_path / "a", *args)
    second = _train(tmp_path / "b", *args)
    assert same_parameters(final_parameters(tmp_path / "a"), final_parameters(tmp_path / "b"))
    assert first["per_mode"] == second["per_mode"] and first["overall"] == second["overall"]
    assert (tmp_path / "a" / "metrics.jsonl").read_text().count("\n") == 4
    losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in "ab"]
    assert losses[0] == losses[1]
    _train(tmp_path / "c", *args, "train.seed=1")
    assert not same_parameters(final_parameters(tmp_path / "a"), final_parameters(tmp_path / "c"))

    info = json.loads((tmp_path / "a" / "run_info.json").read_text())
    assert info["seed"] == 0 and json.loads((tmp_path / "c" / "run_info.json").read_text())["seed"] == 1
    assert info["kml_version"] == kml.__version__ and info["torch_version"] == torch.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    if head.returncode == 0:
        assert info["git_commit"] == head.stdout.strip()
        assert isinstance(info["git_dirty"], bool)
    saved = (tmp_path / "a" / "config.yaml").read_text()
    assert "deterministic: true" in saved and "seed: 0" in saved
