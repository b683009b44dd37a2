"""Campaigns (scripts/reproduce.py): plan, run, skip, resume, records, report-only,
and the report rebuilt from committed records with no checkpoints present."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fixtures_engine import SCRIPTS, TINY, run_script

from kml.campaign.plan import NEW, PARTIAL, RECORD_FILES, RECORDED, plan_campaign
from kml.campaign.runner import run_campaign
from kml.errors import KmlError

# the tests' tiny model and episodes as campaign-wide train.py overrides (quoted: they hold '=')
TINY_RUN = [f"'{o}'" for o in TINY if o.startswith(("learner.backbone.", "modulation.", "episode.queries",
                                                     "train.meta_batch_size", "eval.batch_size"))]


def tiny_campaign(root, tmp_path, **extra):
    return [
        "campaign=synthetic",
        "campaign.ways=3",
        "campaign.budget.image_size=16",
        "campaign.budget.iterations=4",
        "campaign.budget.checkpoint_every=2",
        "campaign.budget.log_every=2",
        "campaign.budget.eval_tasks_per_mode=4",
        "campaign.budget.val_every=2",
        "campaign.budget.val_tasks_per_mode=3",
        "campaign.overrides=[" + ",".join(TINY_RUN) + "]",
        f"data_root={root}",
        f"work_dir={tmp_path / 'work'}",
        f"results_dir={tmp_path / 'results'}",
        f"report={tmp_path / 'docs' / 'results.md'}",
        f"figures_dir={tmp_path / 'docs' / 'figures'}",
        "progress=false",
        "allow_dirty=true",  # the developer's work tree may have uncommitted changes
        *[f"{k}={v}" for k, v in extra.items()],
    ]


@pytest.fixture
def reproduce(compose):
    return lambda overrides: compose(overrides, config_name="reproduce")


@pytest.fixture(autouse=True)
def committed_code(monkeypatch):
    """Runs trained in these tests count as trained from committed code, whatever the state
    of the developer's work tree, so reports carry no ‡ unless a test asks for one."""
    import kml.engine.rundir as rundir

    monkeypatch.setattr(rundir, "_git_dirty", lambda: False)


def test_plan_names_runs_and_their_train_overrides(reproduce, synthetic_root, tmp_path):
    cfg = reproduce(tiny_campaign(synthetic_root, tmp_path))
    plan = plan_campaign(cfg.campaign, tmp_path / "work", tmp_path / "results", data_root=str(synthetic_root))
    assert [r.run_id for r in plan] == [
        "synthetic_1shot_protonet_seed0", "synthetic_1shot_mprotonet_seed0", "synthetic_1shot_mprotonet-kml_seed0"
    ]
    assert all(r.status() == NEW for r in plan)
    kml = plan[2]
    assert "modulation=kml" in kml.overrides and "train.iterations=4" in kml.overrides
    assert "eval.val_every=2" in kml.overrides and "learner.backbone.channels=[4,6,6,8]" in kml.overrides
    assert kml.command().startswith("python scripts/train.py mode=synthetic learner=protonet modulation=kml")
    assert f"data.root={synthetic_root}" in kml.train_overrides()


def test_run_skip_resume_record_and_report(reproduce, synthetic_root, tmp_path):
    logs: list[str] = []
    log = lambda *a: logs.append(" ".join(map(str, a)))  # noqa: E731
    # one run, then stop (a campaign continues one run at a time)
    out = run_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path, max_runs=1)), log=log)
    assert [s for _, s in out["plan"]] == [RECORDED, NEW, NEW]
    record = tmp_path / "results" / "synthetic" / "synthetic_1shot_protonet_seed0"
    assert {p.name for p in record.iterdir()} == {*RECORD_FILES, "record.json"}  # never checkpoints
    assert json.loads((record / "record.json").read_text())["method"] == "ProtoNet"
    for path in record.iterdir():  # committed records name no folder of this machine
        assert str(tmp_path) not in path.read_text(), path.name
    assert "root: data\n" in (record / "config.yaml").read_text()
    assert (tmp_path / "results" / "synthetic" / "campaign.yaml").is_file()

    # an interrupted run (a checkpoint, no results) is resumed, not restarted
    plan = plan_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path)).campaign, tmp_path / "work",
                         tmp_path / "results", data_root=str(synthetic_root))
    film = plan[1]
    from kml.cli import compose_run_config
    from kml.engine.runs import run_training

    short = compose_run_config([*film.train_overrides(), "train.iterations=2"])
    run_training(short, film.run_dir, log=lambda *a: None)
    (film.run_dir / "results.json").unlink()  # as if killed before testing
    assert film.status() == PARTIAL
    first_run_time = (record / "results.json").stat().st_mtime_ns

    out = run_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path)), log=log)
    assert [s for _, s in out["plan"]] == [RECORDED, RECORDED, RECORDED]
    assert any("synthetic_1shot_protonet_seed0: recorded, skipped" in line for line in logs)
    assert any(f"resuming {film.run_dir}" in line for line in logs)
    assert (record / "results.json").stat().st_mtime_ns == first_run_time  # skipped, not rerun
    resumed = json.loads((film.record_dir / "results.json").read_text())
    assert resumed["iterations"] == {"all": 4}

    report = (tmp_path / "docs" / "results.md").read_text()
    assert "| MProtoNet+KML − ProtoNet |" in report and "| MProtoNet+KML − MProtoNet |" in report
    assert "python scripts/train.py mode=synthetic learner=protonet modulation=film" in report
    assert (tmp_path / "docs" / "figures" / "results_synthetic_synthetic_1shot_accuracy.png").is_file()


def test_only_methods_runs_just_those_methods(reproduce, synthetic_root, tmp_path):
    # one process per method (e.g. several on one GPU): each runs its own runs only
    out = run_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path, only_methods='["MProtoNet+KML"]')),
                       log=lambda *a: None)
    assert [s for _, s in out["plan"]] == [NEW, NEW, RECORDED]
    assert not (tmp_path / "work" / "synthetic" / "synthetic_1shot_protonet_seed0").exists()
    with pytest.raises(KmlError, match=r"only_methods names \['KML'\].*ProtoNet, MProtoNet, MProtoNet\+KML"):
        run_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path, only_methods="[KML]")))
    # the plan of such a process times and lists only its own runs
    lines: list[str] = []
    out = run_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path, only_methods='["MProtoNet"]', dry_run="true")),
                       log=lines.append)
    text = "\n".join(lines)
    assert "| synthetic_1shot_protonet_seed0 | new, not in only_methods | - |" in text
    assert "| synthetic_1shot_mprotonet-kml_seed0 | recorded, not in only_methods | - |" in text
    assert "  synthetic_1shot_mprotonet_seed0: python scripts/train.py" in text
    assert "  synthetic_1shot_protonet_seed0:" not in text and out["seconds"] > 0


def test_report_only_rebuilds_from_records_without_checkpoints(reproduce, synthetic_root, tmp_path):
    run_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path)), log=lambda *a: None)
    report = tmp_path / "docs" / "results.md"
    before = report.read_text()
    shutil.rmtree(tmp_path / "work")  # no run directory, no checkpoint, no data needed
    report.unlink()
    shutil.rmtree(tmp_path / "docs" / "figures")
    run_campaign(reproduce(tiny_campaign("/nonexistent", tmp_path, report_only="true")), log=lambda *a: None)
    assert report.read_text() == before
    assert (tmp_path / "docs" / "figures" / "results_synthetic_synthetic_1shot_seed0_curves.png").is_file()
    summary = json.loads(report.with_suffix(".json").read_text())
    paired = {(e["a"], e["b"]): e["per_seed"]["0"] for e in summary[0]["settings"][0]["paired"]}
    assert set(paired) == {("MProtoNet", "ProtoNet"), ("MProtoNet+KML", "ProtoNet"), ("MProtoNet+KML", "MProtoNet")}
    assert paired[("MProtoNet+KML", "ProtoNet")]["overall"]["tasks"] == 12
    # the claims table repeats the paired contrasts of the main methods (one seed: CI over tasks)
    def cell(a, b):
        return f"**{paired[(a, b)]['overall']['difference']:+.2f} ± {paired[(a, b)]['overall']['ci95']:.2f}**"

    claims = {line.split("|")[1].strip(): [x.strip() for x in line.strip("|").split("|")]
              for line in before.splitlines() if line.startswith("| KML >") or line.startswith("| FiLM >")}
    assert set(claims) == {"KML > none (ProtoNet family: MProtoNet+KML − ProtoNet)",
                           "KML > FiLM (ProtoNet family: MProtoNet+KML − MProtoNet)",
                           "FiLM > none (ProtoNet family: MProtoNet − ProtoNet)"}  # no Multi-* method here
    row = claims["KML > none (ProtoNet family: MProtoNet+KML − ProtoNet)"]
    assert row[3] == cell("MProtoNet+KML", "ProtoNet") and row[4] == "one seed (0)"
    assert row[5] == "one seed: no verdict" and row[6] == "-"  # an interval over tasks is not a verdict


def test_dry_run_estimates_and_runs_nothing(synthetic_root, tmp_path):
    proc = run_script("reproduce.py", *[o.replace("'", "") if "overrides" not in o else o for o in
                                         tiny_campaign(synthetic_root, tmp_path, dry_run="true")], cwd=tmp_path)
    assert "estimated time left on this machine" in proc.stdout
    assert "synthetic_1shot_mprotonet-kml_seed0 | new |" in proc.stdout
    assert not (tmp_path / "work").exists() and not (tmp_path / "results").exists()


def test_campaign_errors_are_one_line(reproduce, synthetic_root, tmp_path):
    with pytest.raises(KmlError, match="refers to method 'Nope'"):
        run_campaign(reproduce([*tiny_campaign(synthetic_root, tmp_path), "campaign.baseline=Nope"]))
    with pytest.raises(KmlError, match="no campaign records"):
        run_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path, report_only="true")))
    proc = run_script("reproduce.py", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "campaign" in proc.stderr


def test_diagnostics_step_is_recorded_and_reported(reproduce, synthetic_root, tmp_path):
    overrides = [*tiny_campaign(synthetic_root, tmp_path), "campaign.diagnostics.methods=[MProtoNet,MProtoNet+KML]",
                 "campaign.diagnostics.checkpoints=[2,4]", "campaign.diagnostics.tasks_per_mode=2"]
    # a method is diagnosed as soon as its run is recorded, and never again
    run_campaign(reproduce([*overrides, 'only_methods=["MProtoNet+KML"]']), log=lambda *a: None)
    path = tmp_path / "results" / "synthetic" / "modulation_diagnostics.json"
    first = json.loads(path.read_text())
    assert [(e["label"], e["iteration"]) for e in first["runs"]] == [("MProtoNet+KML", 2), ("MProtoNet+KML", 4)]
    first["runs"][0]["kept"] = True
    path.write_text(json.dumps(first))
    run_campaign(reproduce(overrides), log=lambda *a: None)
    record = json.loads(path.read_text())
    assert record["runs"][2].get("kept") and record["seconds"] > first["seconds"]
    assert [(e["label"], e["iteration"]) for e in record["runs"]] == [
        ("MProtoNet", 2), ("MProtoNet", 4), ("MProtoNet+KML", 2), ("MProtoNet+KML", 4)]
    kml = record["runs"][-1]["modes"]["synthetic_glyphs"]["blocks"]
    assert [b["kind"] for b in kml] == ["kml"] * 4 and all(b["m_abs_mean"] > 0 for b in kml)
    assert record["runs"][0]["bias_zeroed_logit_change"] < 1e-9
    report = (tmp_path / "docs" / "results.md").read_text()
    assert "### What the modulation does" in report and "| MProtoNet+KML | 4 | synthetic_glyphs |" in report


def test_diagnostics_skip_runs_trained_elsewhere_redo_other_settings_and_merge(reproduce, synthetic_root, tmp_path,
                                                                             monkeypatch):
    import kml.analysis.diagnostics as modulation

    overrides = [*tiny_campaign(synthetic_root, tmp_path), "campaign.diagnostics.methods=[MProtoNet,MProtoNet+KML]",
                 "campaign.diagnostics.checkpoints=[4]", "campaign.diagnostics.tasks_per_mode=1"]
    run_campaign(reproduce(overrides), log=lambda *a: None)
    path = tmp_path / "results" / "synthetic" / "modulation_diagnostics.json"
    path.unlink()
    # a run recorded on another machine (no checkpoints here) is skipped with a line, not an error
    shutil.rmtree(tmp_path / "work" / "synthetic" / "synthetic_1shot_mprotonet_seed0")
    # and a process diagnosing another method at the same time keeps its entry
    other = {"label": "Elsewhere", "run_id": "x", "iteration": 4, "tasks_per_mode": 1, "modes": {},
             "bias_zeroed_logit_change": 0.0}
    statistics = modulation.modulation_statistics

    def meanwhile(*args, **kwargs):
        path.write_text(json.dumps({"settings": {"checkpoints": [4], "tasks_per_mode": 1}, "seconds": 1.0,
                                    "runs": [other]}))
        return statistics(*args, **kwargs)

    monkeypatch.setattr(modulation, "modulation_statistics", meanwhile)
    lines: list[str] = []
    run_campaign(reproduce(overrides), log=lines.append)
    assert any("synthetic_1shot_mprotonet_seed0 is recorded but its checkpoints [4] are not in" in line
               for line in lines)
    record = json.loads(path.read_text())
    assert [e["label"] for e in record["runs"]] == ["MProtoNet+KML", "Elsewhere"]
    # other checkpoints or task counts: the old entries are recomputed, not mixed in
    monkeypatch.setattr(modulation, "modulation_statistics", statistics)
    run_campaign(reproduce([*overrides[:-1], "campaign.diagnostics.tasks_per_mode=2"]), log=lambda *a: None)
    record = json.loads(path.read_text())
    assert [(e["label"], e["tasks_per_mode"]) for e in record["runs"]] == [("MProtoNet+KML", 2)]


def test_transference_step_with_an_alpha_sweep_is_recorded_and_reported(reproduce, synthetic_root, tmp_path,
                                                                      monkeypatch):
    overrides = [*tiny_campaign(synthetic_root, tmp_path), "campaign.transference.methods=[ProtoNet,MProtoNet+KML]",
                 "campaign.transference.source_mode=synthetic_glyphs",
                 "campaign.transference.target_mode=synthetic_textures",
                 "campaign.transference.checkpoints=[2,4]", "campaign.transference.sources=3",
                 "campaign.transference.alpha=0.05", "campaign.transference.alpha_sweep=[0.01,0.05]",
                 "campaign.transference.sweep_checkpoint=2"]
    run_campaign(reproduce(overrides), log=lambda *a: None)
    record = json.loads((tmp_path / "results" / "synthetic" / "transference.json").read_text())
    assert [r["label"] for r in record["runs"]] == ["ProtoNet", "MProtoNet+KML"]
    assert [e["iteration"] for e in record["runs"][0]["checkpoints"]] == [2, 4]
    assert sum(len(row) for row in record["runs"][0]["checkpoints"][0]["lr"]) == 3  # 3 sources x 1 target
    sweep = {(e["label"], e["alpha"]): e for e in record["alpha_sweep"]}
    assert set(sweep) == {(m, a) for m in ("ProtoNet", "MProtoNet+KML") for a in (0.01, 0.05)}
    # the sweep at the main alpha and checkpoint repeats the main result
    main = record["runs"][1]["checkpoints"][0]
    assert sweep[("MProtoNet+KML", 0.05)]["positive"] == pytest.approx(main["shares"]["positive"])
    report = (tmp_path / "docs" / "results.md").read_text()
    assert "### Transference" in report and "| 0.01 | ProtoNet |" in report
    assert (tmp_path / "docs" / "figures"
            / "results_synthetic_transference_synthetic_1shot_mprotonet-kml_seed0.png").is_file()

    # every LR computation is kept with its run: a killed step continues without recomputing
    kept = tmp_path / "work" / "synthetic" / "synthetic_1shot_protonet_seed0" / "transference"
    assert len(list(kept.glob("*.json"))) == 3  # checkpoints 2 and 4 at alpha 0.05, checkpoint 2 at 0.01
    (tmp_path / "results" / "synthetic" / "transference.json").unlink()

    def no_recomputation(*args, **kwargs):
        raise AssertionError("a kept LR computation was recomputed")

    monkeypatch.setattr("kml.analysis.transference_runs.analyse_run", no_recomputation)
    run_campaign(reproduce(overrides), log=lambda *a: None)
    again = json.loads((tmp_path / "results" / "synthetic" / "transference.json").read_text())
    assert again["runs"] == record["runs"] and again["alpha_sweep"] == record["alpha_sweep"]


def test_the_committed_records_regenerate_the_committed_report(reproduce, tmp_path):
    # docs/results.md is what report_only=true builds from results/ alone: no run directory,
    # checkpoint or dataset is needed, and nobody edits the report by hand
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    report = tmp_path / "docs" / "results.md"
    run_campaign(reproduce(["campaign=synthetic", "report_only=true", f"results_dir={repo / 'results'}",
                            f"report={report}", f"figures_dir={tmp_path / 'docs' / 'figures'}",
                            "work_dir=/nonexistent", "data_root=/nonexistent"]), log=lambda *a: None)
    assert report.read_text() == (repo / "docs" / "results.md").read_text()
    assert {p.name for p in (tmp_path / "docs" / "figures").iterdir()} <= {
        p.name for p in (repo / "docs" / "figures").iterdir()}


def test_each_section_names_the_papers_setting_at_its_own_shots():
    """A campaign with 1- and 5-shot sections compares each with the paper's table of the
    same shots, and its "Paper column" line says so; a setting without ``{shots}`` is
    shown as written."""
    import re
    from pathlib import Path

    from kml.campaign.report import paper_setting

    paper = {"setting": "the paper's 5Mode 5-way {shots}-shot (84x84)"}
    assert paper_setting(paper, 5) == "the paper's 5Mode 5-way 5-shot (84x84)"
    assert paper_setting({"setting": "the paper's 2Mode 5-way 1-shot"}, 1) == "the paper's 2Mode 5-way 1-shot"
    report = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    sections = re.findall(r"^### \S+, \d+-way (\d+)-shot\n\n.*?\n\nPaper column: ([^\n]*)", report, re.M)
    assert sections
    for shots, line in sections:
        assert re.findall(r"(\d+)-shot", line.split("(")[0]) in ([], [shots]), (shots, line)


def test_gpu_campaign_script_trains_each_method_in_its_own_process_then_reports(synthetic_root, tmp_path):
    # tools/gpu_campaign.sh on the CPU: no archive to prepare (the synthetic modes are
    # already there), one process per method, then the report pass over their records
    repo = SCRIPTS.parent
    archives = tmp_path / "archives"
    archives.mkdir()
    overrides = [o for o in tiny_campaign(synthetic_root, tmp_path) if o.startswith(("campaign.", "allow_dirty"))]
    default_out_existed = (repo / "gpu_campaign").exists()
    env = dict(os.environ, OUT=str(tmp_path / "out"), DATA=str(synthetic_root), WORK=str(tmp_path / "work"),
               PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(repo / "tools" / "gpu_campaign.sh"), "synthetic", str(archives), *overrides],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for method in ("ProtoNet", "MProtoNet", "MProtoNet+KML"):
        assert f"{method}: exit 0" in proc.stdout
    out = tmp_path / "out"
    recorded = sorted(p.parent.name for p in (out / "results" / "synthetic").glob("*/results.json"))
    assert recorded == ["synthetic_1shot_mprotonet-kml_seed0", "synthetic_1shot_mprotonet_seed0",
                        "synthetic_1shot_protonet_seed0"]
    report = (out / "results.md").read_text()
    assert "| MProtoNet+KML − ProtoNet" in report and (out / "figures").is_dir()
    assert (repo / "gpu_campaign").exists() == default_out_existed  # everything went to $OUT
    # a missing archives folder is one line and exit 2
    proc = subprocess.run(["bash", str(repo / "tools" / "gpu_campaign.sh"), "synthetic", str(tmp_path / "none")],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "folder" in proc.stderr


def test_groups_plan_exactly_the_runs_they_name(reproduce, synthetic_root, tmp_path):
    cfg = reproduce([*tiny_campaign(synthetic_root, tmp_path), "campaign.seeds=[0]", "campaign.shots=[1]",
                     "campaign.groups=[{methods: []}, {methods: [ProtoNet, MProtoNet+KML], seeds: [1, 2]},"
                     " {methods: [MProtoNet+KML], shots: [2]}]"])
    ids = [r.run_id for r in plan_campaign(cfg.campaign, tmp_path / "work", tmp_path / "results")]
    assert ids == [
        "synthetic_1shot_protonet_seed0", "synthetic_1shot_mprotonet_seed0", "synthetic_1shot_mprotonet-kml_seed0",
        "synthetic_1shot_protonet_seed1", "synthetic_1shot_mprotonet-kml_seed1",
        "synthetic_1shot_protonet_seed2", "synthetic_1shot_mprotonet-kml_seed2",
        "synthetic_2shot_mprotonet-kml_seed0",
    ]
    with pytest.raises(KmlError, match="refers to method 'Nope'"):
        plan_campaign(reproduce([*tiny_campaign(synthetic_root, tmp_path), "campaign.groups=[{methods: [Nope]}]"])
                      .campaign, tmp_path / "work", tmp_path / "results")


def test_uncommitted_code_is_refused_or_recorded_as_such(reproduce, synthetic_root, tmp_path, monkeypatch):
    import kml.engine.rundir as rundir
    from kml.config import compose_run_config
    from kml.engine.runs import run_training

    monkeypatch.setattr(rundir, "_git_dirty", lambda: True)
    monkeypatch.setattr(rundir, "_git_commit", lambda: "a" * 40)
    overrides = [o for o in tiny_campaign(synthetic_root, tmp_path, only_methods='["ProtoNet","MProtoNet+KML"]')
                 if o != "allow_dirty=true"]
    with pytest.raises(KmlError, match="uncommitted changes.*allow_dirty=true") as err:
        run_campaign(reproduce(overrides), log=lambda *a: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "work" / "synthetic" / "synthetic_1shot_protonet_seed0").exists()  # nothing trained
    # a run that finished on uncommitted code is refused at recording, even once the tree is clean
    run = plan_campaign(reproduce(overrides).campaign, tmp_path / "work", tmp_path / "results",
                        data_root=str(synthetic_root))[0]
    run_training(compose_run_config(run.train_overrides()), run.run_dir, log=lambda *a: None)
    monkeypatch.setattr(rundir, "_git_dirty", lambda: False)
    with pytest.raises(KmlError, match="synthetic_1shot_protonet_seed0 was trained from a work tree with "
                                       "uncommitted changes.*allow_dirty=true"):
        run_campaign(reproduce(overrides), log=lambda *a: None)
    assert not run.record_dir.exists()
    run_campaign(reproduce([*overrides, "allow_dirty=true"]), log=lambda *a: None)
    record = tmp_path / "results" / "synthetic" / "synthetic_1shot_protonet_seed0"
    code = json.loads((record / "record.json").read_text())["code"]
    assert code == {"commits": ["a" * 40], "dirty": True, "commit_changed": False}
    report = (tmp_path / "docs" / "results.md").read_text()
    assert "uncommitted" in report and "| ProtoNet ‡ |" in report
    # the contrasts and claims that rest on such runs carry the mark too
    assert "| MProtoNet+KML − ProtoNet ‡ |" in report
    claim = next(line for line in report.splitlines() if line.startswith("| KML > none"))
    assert "| one seed (0) ‡ |" in claim


def test_resuming_on_another_commit_is_refused_unless_allowed(reproduce, synthetic_root, tmp_path, monkeypatch):
    import kml.engine.rundir as rundir
    from kml.cli import compose_run_config
    from kml.engine.runs import run_training

    monkeypatch.setattr(rundir, "_git_dirty", lambda: False)
    monkeypatch.setattr(rundir, "_git_commit", lambda: "a" * 40)
    overrides = tiny_campaign(synthetic_root, tmp_path, only_methods='["ProtoNet"]')
    run = plan_campaign(reproduce(overrides).campaign, tmp_path / "work", tmp_path / "results",
                        data_root=str(synthetic_root))[0]
    run_training(compose_run_config([*run.train_overrides(), "train.iterations=2"]), run.run_dir, log=lambda *a: None)
    (run.run_dir / "results.json").unlink()  # killed before testing
    monkeypatch.setattr(rundir, "_git_commit", lambda: "b" * 40)
    with pytest.raises(KmlError, match="trained at commit aaaaaaaaaaaa.*allow_commit_change=true"):
        run_campaign(reproduce(overrides), log=lambda *a: None)
    run_campaign(reproduce([*overrides, "allow_commit_change=true"]), log=lambda *a: None)
    code = json.loads((run.record_dir / "record.json").read_text())["code"]
    assert code == {"commits": ["a" * 40, "b" * 40], "dirty": False, "commit_changed": True}
    info = json.loads((run.record_dir / "run_info.json").read_text())
    assert [s["git_commit"] for s in info["resumes"]] == ["b" * 40]
    assert "| ProtoNet † |" in (tmp_path / "docs" / "results.md").read_text()


def test_the_data_section_says_which_runs_recorded_their_data(reproduce, synthetic_root, tmp_path):
    """Runs that predate per-run data records are counted, and set against the campaign's
    data.json: same hashes, or the datasets whose arrays differ."""
    overrides = tiny_campaign(synthetic_root, tmp_path, only_methods='["ProtoNet","MProtoNet"]')
    run_campaign(reproduce(overrides), log=lambda *a: None)
    campaign = tmp_path / "results" / "synthetic"
    info_path = campaign / "synthetic_1shot_mprotonet_seed0" / "run_info.json"
    info = json.loads(info_path.read_text())
    names = sorted(info["data"])
    del info["data"]  # as written before runs recorded their data
    info_path.write_text(json.dumps(info))

    def data_lines() -> str:
        run_campaign(reproduce([*overrides, "report_only=true"]), log=lambda *a: None)
        report = (tmp_path / "docs" / "results.md").read_text()
        return next(line for line in report.splitlines() if "runs recorded their data" in line)

    line = data_lines()
    assert line.startswith("1 of 2 runs recorded their data; all of them saw identical prepared arrays")
    assert line.endswith("The other 1 predate per-run data records; the campaign's `data.json` (written by the "
                         "runner where it last ran, not by those runs) has the same hashes.")
    data = json.loads((campaign / "data.json").read_text())
    data["datasets"][names[0]]["sha256"] = "0" * 64
    (campaign / "data.json").write_text(json.dumps(data))
    assert data_lines().endswith(f"has other arrays for {names[0]}.")


def test_a_mixed_seed_campaign_is_reported_across_seeds(reproduce, synthetic_root, tmp_path):
    """Three seeds for ProtoNet and MProtoNet+KML, one for MProtoNet and a rank-2 variant:
    contrasts with several seeds are reported across seeds (t-interval over seeds), with
    the per-seed figures below; only contrasts with three seeds get a verdict, the findings
    text says what the table says, the ablation judges each row by its own yardstick, and
    the advantage over training follows the validation differences."""
    from kml.analysis.seeds import across_seeds, holm_survivors, student_t_quantile

    methods = ("[{name: ProtoNet, learner: protonet, modulation: none}, {name: MProtoNet, learner: protonet, "
               "modulation: film}, {name: MProtoNet+KML, learner: protonet, modulation: kml}, {name: 'MProtoNet+KML "
               "(rank 2)', learner: protonet, modulation: kml, overrides: ['modulation.rank=2']}]")
    overrides = [*tiny_campaign(synthetic_root, tmp_path), f"campaign.methods={methods}",
                 "campaign.groups=[{methods: []}, {methods: [ProtoNet, MProtoNet+KML], seeds: [1, 2]}]",
                 "campaign.ablation=[['MProtoNet+KML (rank 2)', MProtoNet+KML, rank 2], "
                 "[MProtoNet+KML, ProtoNet, KML]]"]
    run_campaign(reproduce(overrides), log=lambda *a: None)
    notes = tmp_path / "results" / "synthetic" / "notes.md"
    notes.write_text("KML − none: {{diff: MProtoNet+KML − ProtoNet @ 1-shot}}, "
                     "{{verdict: MProtoNet+KML − ProtoNet @ 1-shot}}; "
                     "FiLM: {{verdict: MProtoNet − ProtoNet @ 1-shot}}.")
    run_campaign(reproduce([*overrides, "report_only=true"]), log=lambda *a: None)
    report = (tmp_path / "docs" / "results.md").read_text()
    summary = json.loads((tmp_path / "docs" / "results.json").read_text())[0]["settings"][0]
    assert summary["seeds"] == [0, 1, 2]
    contrasts = {(e["a"], e["b"]): e for e in summary["paired"]}
    kml = contrasts[("MProtoNet+KML", "ProtoNet")]
    per_seed = [kml["per_seed"][s]["overall"]["difference"] for s in ("0", "1", "2")]
    mean, sd = sum(per_seed) / 3, float(np.std(per_seed, ddof=1))
    half = 4.302652729911275 * sd / math.sqrt(3)
    assert abs(student_t_quantile(2) - 4.302652729911275) < 1e-9
    assert kml["across_seeds"]["overall"]["mean"] == pytest.approx(mean, abs=1e-12)
    assert kml["across_seeds"]["overall"]["ci95"] == pytest.approx(half, rel=1e-9)
    assert "across_seeds" not in contrasts[("MProtoNet", "ProtoNet")]  # MProtoNet has seed 0 only
    row = next(line for line in report.splitlines() if line.startswith("| MProtoNet+KML − ProtoNet |"))
    assert f"**{mean:+.2f} ± {half:.2f}** | - | 0, 1, 2 |" in row
    per_seed_rows = [line for line in report.splitlines() if line.startswith("| MProtoNet+KML − ProtoNet | ")
                     and line.split("|")[2].strip() in ("0", "1", "2")]
    assert len(per_seed_rows) == 3  # the per-seed table

    # the verdict rule: three seeds give a verdict, one seed none; the findings agree
    s = across_seeds(per_seed)
    word = "holds" if s.low > 0 else "does not hold" if s.high < 0 else "not established"
    claims = {line.split("|")[1].strip(): line.split("|") for line in report.splitlines()
              if line.startswith("| KML > none") or line.startswith("| FiLM > none")}
    kml_claim = claims["KML > none (ProtoNet family: MProtoNet+KML − ProtoNet)"]
    film_claim = claims["FiLM > none (ProtoNet family: MProtoNet − ProtoNet)"]
    assert kml_claim[5].strip() == "3 (0, 1, 2)" and kml_claim[6].strip() == word
    assert film_claim[5].strip() == "one seed (0)" and film_claim[6].strip() == "one seed: no verdict"
    judged = [line.split("|") for line in report.splitlines() if line.startswith("| KML >")
              or line.startswith("| FiLM >")]
    judged = [row for row in judged if "no verdict" not in row[6]]
    if word != "not established":  # Holm over the claims with a verdict (here this one alone)
        assert kml_claim[7].strip() == ("survives" if holm_survivors([s.p_value])[0] else "does not survive")
    assert len(judged) == 1
    assert (f"KML − none: {mean:+.2f} ± {half:.2f} (3 seeds), {word}; FiLM: one seed: no verdict."
            in report.replace("+-", "-"))

    # the ablation: each row against 2 sqrt(sd_a^2 + sd_b^2); a one-seed method borrows its kind's sd
    accuracy = {m: [v["accuracy"] for v in summary["overall"][m].values()] for m in ("ProtoNet", "MProtoNet+KML")}
    sd_kml, sd_none = (float(np.std(accuracy[m], ddof=1)) for m in ("MProtoNet+KML", "ProtoNet"))
    rank_row = next(line for line in report.splitlines() if line.startswith("| rank 2 |"))
    assert f"| {2 * math.hypot(sd_kml, sd_kml):.2f} (sd {sd_kml:.2f} from MProtoNet+KML; {sd_kml:.2f}) |" in rank_row
    kml_row = next(line for line in report.splitlines() if line.startswith("| KML | MProtoNet+KML − ProtoNet |"))
    assert f"| {2 * math.hypot(sd_kml, sd_none):.2f} (sd {sd_kml:.2f}; {sd_none:.2f}) |" in kml_row

    # the advantage over training: per-seed validation differences, across seeds at each point
    advantage = next(a for a in summary["advantage_over_training"]
                     if a["a"] == "MProtoNet+KML" and a["b"] == "ProtoNet")
    assert sorted(advantage["per_seed"]) == ["0", "1", "2"] and sorted(advantage["per_seed"]["0"]) == ["2", "4"]
    at_2 = [advantage["per_seed"][seed]["2"][0] for seed in ("0", "1", "2")]
    assert all(advantage["per_seed"][seed]["2"][1] is not None for seed in ("0", "1", "2"))  # paired over val tasks
    cell = f"{across_seeds(at_2).mean:+.2f} ± {across_seeds(at_2).ci95:.2f}"
    assert any(line.startswith("| 2 | ") and cell in line for line in report.splitlines())
    assert (tmp_path / "docs" / "figures" / "results_synthetic_synthetic_1shot_forest.png").is_file()
    assert (tmp_path / "docs" / "figures" / "results_synthetic_synthetic_1shot_advantage.png").is_file()


def test_a_launcher_runs_the_missing_runs_as_jobs_and_the_campaign_records_them(reproduce, synthetic_root, tmp_path,
                                                                                 monkeypatch):
    """launcher=submitit_local: each missing run is a job, a process of its own (as on SLURM
    with submitit_slurm), that trains into the run's directory with resume=auto; the
    campaign waits for the jobs, then records the runs as it records the runs it trains."""
    from kml.config import compose_run_config
    from kml.engine.runs import run_training

    # each job imports this checkout's kml, as the campaign does
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(SCRIPTS.parent), os.environ.get("PYTHONPATH"))
                                                     if p))
    overrides = tiny_campaign(synthetic_root, tmp_path, only_methods='["ProtoNet","MProtoNet"]',
                              launcher="submitit_local")
    plan = plan_campaign(reproduce(overrides).campaign, tmp_path / "work", tmp_path / "results",
                         data_root=str(synthetic_root))
    film = plan[1]  # interrupted earlier, after 2 of its 4 iterations: its job continues it
    run_training(compose_run_config([*film.train_overrides(), "train.iterations=2"]), film.run_dir, log=lambda *a: None)
    (film.run_dir / "results.json").unlink()
    assert [r.status() for r in plan] == [NEW, PARTIAL, NEW]

    lines: list[str] = []
    run_campaign(reproduce([*overrides, "dry_run=true"]), log=lines.append)
    text = "\n".join(lines)
    assert "launcher submitit_local would start 2 jobs, one per run" in text
    assert f"  {film.run_id}: python scripts/train.py mode=synthetic learner=protonet modulation=film" in text
    assert f"resume=auto hydra.run.dir={film.run_dir}" in text

    lines.clear()
    out = run_campaign(reproduce(overrides), log=lines.append)
    assert [s for _, s in out["plan"]] == [RECORDED, RECORDED, NEW]
    assert any(f"#0: {plan[0].run_id} in {plan[0].run_dir}" in line for line in lines)
    assert (tmp_path / "work" / "synthetic" / ".submitit").is_dir()  # submitit's own records of the jobs
    assert not plan[2].run_dir.exists()  # not in only_methods
    for run in plan[:2]:
        assert {p.name for p in run.record_dir.iterdir()} == {*RECORD_FILES, "record.json"}
        for path in run.record_dir.iterdir():  # records name no folder of this machine
            assert str(tmp_path) not in path.read_text(), path.name
        record = json.loads((run.record_dir / "record.json").read_text())
        assert record["seconds"] > 0 and record["machine"]["cpu_count"] == os.cpu_count()  # the job's machine
        # which the job also left in its run directory, for when the launcher loses its results
        assert json.loads((run.run_dir / "job.json").read_text())["machine"] == record["machine"]
        info = json.loads((run.record_dir / "run_info.json").read_text())
        assert "submitit" not in " ".join(info["command"])  # the campaign's command, not the job's bootstrap
        assert json.loads((run.record_dir / "results.json").read_text())["iterations"] == {"all": 4}
    log = (film.run_dir / "train.log").read_text()
    assert f"resumed from {film.run_dir.resolve()}/checkpoints/last.pt at iteration 2" in log
    assert "resumed" not in (plan[0].run_dir / "train.log").read_text()


def test_a_launched_run_that_fails_is_named_and_the_others_are_recorded(reproduce, synthetic_root, tmp_path):
    """Hydra's basic launcher runs the jobs in this process, one after the other. The run
    whose job fails is named in one line; the other is recorded; then the campaign stops
    with one error line, and this process's logging is as it was."""
    import logging

    cfg = reproduce(tiny_campaign(synthetic_root, tmp_path, only_methods='["ProtoNet","MProtoNet"]', launcher="basic"))
    cfg.campaign.methods[1].overrides = ["mode.datasets=[synthetic_glyphs,nonexistent]"]  # fails as it starts
    handlers = logging.getLogger().handlers[:]
    lines: list[str] = []
    with pytest.raises(KmlError, match=r"^1 of the 2 launched runs did not finish \(synthetic_1shot_mprotonet_seed0;"):
        run_campaign(cfg, log=lines.append)
    assert logging.getLogger().handlers == handlers
    failed = [line for line in lines if "not recorded" in line]
    run_dir = tmp_path / "work" / "synthetic" / "synthetic_1shot_mprotonet_seed0"
    assert len(failed) == 1 and failed[0].startswith(
        "synthetic_1shot_mprotonet_seed0: not recorded, its job failed: unknown dataset 'nonexistent'; known datasets:")
    assert failed[0].endswith(f"(log: {run_dir / 'train.log'})")
    assert "error: unknown dataset 'nonexistent'" in (run_dir / "train.log").read_text()
    results = tmp_path / "results" / "synthetic"
    assert (results / "synthetic_1shot_protonet_seed0" / "results.json").is_file()
    assert not (results / "synthetic_1shot_mprotonet_seed0").exists()
    assert (tmp_path / "docs" / "results.md").is_file()  # the report of what is recorded


def test_launcher_errors_are_one_line_before_anything_runs(reproduce, synthetic_root, tmp_path, monkeypatch):
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    def error(**extra):
        with pytest.raises(KmlError) as err:
            run_campaign(reproduce(tiny_campaign(synthetic_root, tmp_path, **extra)), log=lambda *a: None)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert error(launcher_overrides="['hydra.launcher.partition=gpu']").startswith(
        "launcher_overrides are settings of a launcher, but launcher is not set; pass launcher=<name>")
    assert error(launcher="submitit_local", launcher_overrides="['train.lr=0.1']").startswith(
        "launcher_overrides holds 'train.lr=0.1', which is not a launcher setting; write each as "
        "hydra.launcher.<key>=<value>")
    assert error(launcher="submitit_local", launcher_overrides="['hydra.launcher.partition=gpu']").startswith(
        "launcher_overrides: submitit_local has no setting 'partition'; its settings: submitit_folder, timeout_min,")
    assert error(launcher="nope") == (
        "hydra/launcher=nope is not a known option; valid options for hydra/launcher: basic, submitit_local, "
        "submitit_slurm")
    Plugins.instance()  # the plugins' configs are registered; then the submitit launcher's goes, as if not installed
    monkeypatch.delitem(ConfigStore.instance().repo["hydra"]["launcher"], "submitit_slurm.yaml")
    assert error(launcher="submitit_slurm", dry_run="true") == (
        "hydra/launcher=submitit_slurm needs Hydra's submitit launcher plugin, which is not installed; "
        'install it with: pip install "kernel-modulation[slurm]"')
    assert not (tmp_path / "work").exists() and not (tmp_path / "results").exists()


def test_records_lose_machine_paths_only_where_they_stand_as_paths(reproduce, tmp_path, monkeypatch):
    from kml.campaign.runner import _portable, machine_paths

    monkeypatch.chdir(tmp_path)
    cfg = reproduce(["campaign=synthetic", "work_dir=work", "data_root=datasets"])
    paths = machine_paths(cfg)
    text = (f"root: datasets\nrun_dir: work/synthetic/run\npython: /opt/work/venv/bin/python\n"
            f"abs: {tmp_path}/work/synthetic/run\nframework: homework\nother: datasets2\ndatasets:\n"
            f"note: the work tree\ncommand: [\"data_root=datasets\", \"{tmp_path}/scripts/train.py\"]")
    assert _portable(text, paths).splitlines() == [
        "root: data", "run_dir: outputs/campaigns/synthetic/run", "python: /opt/work/venv/bin/python",
        "abs: outputs/campaigns/synthetic/run", "framework: homework", "other: datasets2", "datasets:",
        "note: the work tree", 'command: ["data_root=data", "scripts/train.py"]']
