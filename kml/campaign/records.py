"""A campaign's run records: the records of the finished runs of each campaign in a
results folder (:func:`load_campaigns`), who they are (method, seed, setting), and the
code marks a report puts beside a run trained from uncommitted code or on two commits."""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from kml.analysis.comparison import RunRecord, read_run_record


@dataclass
class CampaignRecords:
    """A campaign's spec and the records of its finished runs."""

    name: str
    spec: dict
    folder: Path
    runs: list[RunRecord] = field(default_factory=list)
    records: dict[str, dict] = field(default_factory=dict)  # run folder name -> record.json
    transference: dict | None = None
    diagnostics: dict | None = None
    data: dict | None = None  # data.json: the campaign's prepared data

    def method_order(self) -> list[str]:
        return [m["name"] for m in self.spec.get("methods", [])]


def load_campaigns(results_dir: Path) -> list[CampaignRecords]:
    """Every campaign with records under ``results_dir`` (``<campaign>/campaign.yaml``)."""
    campaigns = []
    if not results_dir.is_dir():
        return campaigns
    for spec_path in sorted(results_dir.glob("*/campaign.yaml")):
        folder = spec_path.parent
        spec = OmegaConf.to_container(OmegaConf.load(spec_path), resolve=True)
        c = CampaignRecords(name=spec.get("name", folder.name), spec=spec, folder=folder)
        order = {name: i for i, name in enumerate(c.method_order())}
        for run_dir in sorted(p for p in folder.iterdir() if (p / "results.json").is_file()):
            c.runs.append(read_run_record(run_dir))
            record = run_dir / "record.json"
            c.records[run_dir.name] = json.loads(record.read_text()) if record.is_file() else {}
        c.runs.sort(key=lambda r: (order.get(method_of(c, r), 99), seed_of(c, r)))
        for attribute, name in (("transference", "transference.json"), ("diagnostics", "modulation_diagnostics.json"),
                                ("data", "data.json")):
            path = folder / name
            if path.is_file():
                setattr(c, attribute, json.loads(path.read_text()))
        campaigns.append(c)
    campaigns.sort(key=lambda c: (c.spec.get("order", 0), c.name))
    return campaigns


def method_of(c: CampaignRecords, run: RunRecord) -> str:
    """The campaign's display name of a run's method (e.g. Multi-ProtoNet); a run recorded
    under an earlier name of a method (its ``aliases``) gets the method's name."""
    recorded = c.records.get(run.path.name, {}).get("method", run.method)
    for method in c.spec.get("methods", []):
        if recorded in (method.get("aliases") or []):
            return method["name"]
    return recorded


def seed_of(c: CampaignRecords, run: RunRecord) -> int:
    return int(c.records.get(run.path.name, {}).get("seed", run.results["config"]["train"]["seed"]))


Setting = dict  # {seed: [RunRecord, ...]} of one (mode, shots)


def settings_of(c: CampaignRecords) -> dict[tuple[str, int], Setting]:
    """Runs grouped by setting ``(mode, shots)``, then by training seed (ascending)."""
    groups: dict[tuple[str, int], dict[int, list[RunRecord]]] = {}
    for run in c.runs:
        key = (run.results["mode"], int(run.results["eval"]["shots"]))
        groups.setdefault(key, {}).setdefault(seed_of(c, run), []).append(run)
    return {key: dict(sorted(by_seed.items())) for key, by_seed in groups.items()}


def methods_in(c: CampaignRecords, setting: Setting) -> list[str]:
    """The methods of a setting, in the campaign's order."""
    present = {method_of(c, r) for runs in setting.values() for r in runs}
    order = c.method_order()
    return sorted(present, key=lambda n: order.index(n) if n in order else len(order))


def runs_of(c: CampaignRecords, setting: Setting, method: str) -> dict[int, RunRecord]:
    """``{seed: run}`` of one method in a setting."""
    return {seed: r for seed, runs in setting.items() for r in runs if method_of(c, r) == method}


def method_kinds(c: CampaignRecords) -> dict[str, str]:
    """The campaign's main method of each kind (``none``, ``film``, ``kml``, ``multi``): the
    first listed method with that modulation (or ``multi: true``) and no other change.
    Variants listed after it (another learning rate, another protocol) are not."""
    kinds: dict[str, str] = {}
    for method in c.spec.get("methods", []):
        kind = "multi" if method.get("multi") else method.get("modulation", "none")
        kinds.setdefault(kind, method["name"])
    return kinds


def paper_value(c: CampaignRecords, method: str, shots: int | None = None) -> float | None:
    """The paper's accuracy of ``method`` in the campaign's paper setting, for ``shots``
    (``paper.by_shots`` when the campaign has several shots, else ``paper.values``)."""
    paper = c.spec.get("paper") or {}
    by_shots = paper.get("by_shots") or {}
    if shots is not None and (shots in by_shots or str(shots) in by_shots):
        return (by_shots.get(shots) or by_shots.get(str(shots)) or {}).get(method)
    first = (c.spec.get("shots") or [1])[0]
    if shots is not None and shots != first:
        return None
    return (paper.get("values") or {}).get(method)


def paper_setting(paper: dict, shots: int) -> str:
    """The paper's setting as the campaign describes it, with ``{shots}`` replaced by the
    section's shots (a campaign with several shots compares each with the paper's table
    of the same shots)."""
    return str(paper.get("setting", "")).replace("{shots}", str(shots))


def paper_difference(c: CampaignRecords, a: str, b: str, shots: int) -> float | None:
    pa, pb = paper_value(c, a, shots), paper_value(c, b, shots)
    return pa - pb if pa is not None and pb is not None else None


def code_marks(c: CampaignRecords, run: RunRecord) -> str:
    """`` ‡`` for a run trained from uncommitted code, `` †`` for one resumed on another
    commit (from its record, or its ``run_info.json`` for records that predate that), `` §``
    for one resumed before records kept the commit of each resume."""
    code = c.records.get(run.path.name, {}).get("code") or run_code(run.path)
    marks = (" ‡" if code.get("dirty") else "") + (" †" if code.get("commit_changed") else "")
    return marks + (" §" if resumed_on_unrecorded_commit(run.path) else "")


def resumed_on_unrecorded_commit(run_dir: Path) -> bool:
    """Whether a run was resumed before ``run_info.json`` kept a commit per resume: it lists
    the times it was resumed (``resumed``) but not the commit of each (``resumes``)."""
    path = Path(run_dir) / "run_info.json"
    if not path.is_file():
        return False
    info = json.loads(path.read_text())
    return bool(info.get("resumed")) and not info.get("resumes")


def runs_marks(c: CampaignRecords, runs) -> str:
    """The :func:`code_marks` of several runs together, e.g. `` ‡`` ("" when all were
    trained from committed code on one commit)."""
    marks = "".join(sorted({mark for r in runs for mark in code_marks(c, r).split()}))
    return f" {marks}" if marks else ""


CODE_MARKS_NOTE = (
    "‡: trained from a work tree with uncommitted changes (`run_info.json`: `git_dirty`), so its exact code is not "
    "in git. †: resumed on another commit than it started on (`run_info.json`: `resumes`). §: resumed before "
    "records kept the commit of each resume (`run_info.json` lists when it was resumed, `resumed`, not on which "
    "commit), so the commit of its later sessions is not recorded; the record names the commit it started on."
)


def signed(value: float) -> str:
    return f"{round(value, 2) + 0.0:+.2f}"


def seeds_text(seeds) -> str:
    return ", ".join(str(s) for s in seeds)


def relative_link(path: Path, report: Path) -> str:
    return os.path.relpath(path, report.parent).replace(os.sep, "/")


def anchor(c: CampaignRecords) -> str:
    """The id of a campaign's section: an explicit HTML anchor before its heading, so links
    work wherever the report is rendered (GitHub and the documentation site slug headings
    differently)."""
    return "campaign-" + re.sub(r"[^a-z0-9_-]", "-", c.name.lower())


def machine_description(device: torch.device) -> dict:
    """What a record says about the hardware it was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def run_code(run_dir: Path) -> dict:
    """The code a run was trained with, from its ``run_info.json``: ``{"commits": [the
    commit of each session, first to last, each once], "dirty": trained (in any session)
    from a work tree with uncommitted changes, "commit_changed": resumed on another
    commit}``; empty for a run without one."""
    path = Path(run_dir) / "run_info.json"
    if not path.is_file():
        return {}
    info = json.loads(path.read_text())
    sessions = [info, *info.get("resumes", [])]
    commits: list = []
    for session in sessions:
        if session.get("git_commit") not in commits:
            commits.append(session.get("git_commit"))
    return {
        "commits": commits,
        "dirty": any(bool(session.get("git_dirty")) for session in sessions),
        "commit_changed": len(commits) > 1,
    }
