"""A campaign's runs: methods x modes x shots x seeds, each with its train.py overrides,
its run directory and its record folder."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from kml.config import ConfigError

__all__ = ["PlannedRun", "plan_campaign", "planned_settings", "slug", "validate_campaign", "RECORD_FILES",
           "RECORDED", "FINISHED", "PARTIAL", "NEW"]

#: the small records of a finished run kept in ``results/<campaign>/<run>/`` (never checkpoints)
RECORD_FILES = ("results.json", "task_accuracies.json", "metrics.jsonl", "config.yaml", "run_info.json",
                "val_task_accuracies.jsonl")

RECORDED, FINISHED, PARTIAL, NEW = "recorded", "finished", "partial", "new"


def slug(text: str) -> str:
    """``"MProtoNet+KML"`` -> ``"mprotonet-kml"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class PlannedRun:
    """One run of a campaign.

    Attributes:
        run_id: ``<mode>_<shots>shot_<method>_seed<seed>``.
        method: the method's display name.
        overrides: the ``scripts/train.py`` overrides of the run, ``data.root`` excluded.
        run_dir: its run directory (checkpoints live here).
        record_dir: ``<results_dir>/<campaign>/<run_id>``.
    """

    run_id: str
    method: str
    mode: str
    shots: int
    seed: int
    overrides: list[str]
    run_dir: Path
    record_dir: Path
    data_root: str = "data"
    extra: list[str] = field(default_factory=list)  # overrides that do not change the results (progress)

    def status(self) -> str:
        """``recorded`` (its record exists: done, on this or another machine), ``finished``
        (trained and tested here, not yet recorded), ``partial`` (started: resumable) or ``new``."""
        if (self.record_dir / "results.json").is_file():
            return RECORDED
        if (self.run_dir / "results.json").is_file():
            return FINISHED
        if (self.run_dir / "config.yaml").is_file():
            return PARTIAL
        return NEW

    def train_overrides(self) -> list[str]:
        """Every override the run is composed with."""
        return [*self.overrides, f"data.root={self.data_root}", *self.extra]

    def command(self) -> str:
        """The equivalent ``scripts/train.py`` command (datasets prepared under ``data/``)."""
        return "python scripts/train.py " + " ".join(shlex.quote(o) for o in self.overrides)


def validate_campaign(campaign: DictConfig) -> None:
    """Check a campaign config: known methods (registered learners and modulations, after
    importing the campaign's ``imports``), a baseline among them, valid pairs."""
    from kml.config.imports import import_user_modules
    from kml.learners import list_learners
    from kml.modulation import list_modulations

    if not campaign.modes:
        raise ConfigError(f"campaign {campaign.name} lists no modes; set campaign.modes=[<mode>, ...]")
    if not campaign.methods:
        raise ConfigError(f"campaign {campaign.name} lists no methods")
    names = [m.name for m in campaign.methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"campaign {campaign.name} names a method twice: {names}")
    every = names + [a for m in campaign.methods for a in m.get("aliases", [])]
    if len({slug(n) for n in every}) != len(every):
        raise ConfigError(
            f"campaign {campaign.name}: its method names and aliases must differ from each other (also once "
            f"written as run folder names): {every}"
        )
    import_user_modules(campaign.get("imports"))
    learners, modulations = list_learners(), list_modulations()
    for method in campaign.methods:
        if method.learner not in learners or method.modulation not in modulations:
            raise ConfigError(
                f"campaign method {method.name}: learner={method.learner} modulation={method.modulation} is not a "
                f"method; use learner {'|'.join(learners)} and modulation {'|'.join(modulations)}"
            )
    named = [campaign.baseline, *(n for pair in campaign.pairs for n in pair), *campaign.transference.methods]
    named += list(campaign.get("diagnostics", {}).get("methods", []))
    named += [n for group in campaign.get("groups", []) for n in group.methods]
    for row in campaign.get("ablation", []):
        if len(row) != 3:
            raise ConfigError(
                f"campaign {campaign.name}: each ablation row is [method, reference, what it changes], got {list(row)}"
            )
        named += list(row[:2])
    for name in named:
        if name not in names:
            raise ConfigError(
                f"campaign {campaign.name} refers to method {name!r}, which it does not list ({', '.join(names)})"
            )
    for pair in campaign.pairs:
        if len(pair) != 2:
            raise ConfigError(f"campaign {campaign.name}: each of pairs is [method, reference], got {list(pair)}")
    if campaign.budget.eval_checkpoint not in ("last", "best"):
        raise ConfigError("campaign.budget.eval_checkpoint must be last or best")
    if campaign.budget.eval_checkpoint == "best" and not campaign.budget.val_every:
        raise ConfigError("campaign.budget.eval_checkpoint=best needs campaign.budget.val_every > 0")


def planned_settings(campaign) -> list[tuple[int, int, str, str]]:
    """``(seed, shots, mode, method)`` of every run of ``campaign`` (a config or its plain
    dict), each once, in order: by group (one implicit group of every method at every seed
    and shot when the campaign lists none), then seeds, shots, modes and methods."""
    get = campaign.get
    methods = [m["name"] for m in get("methods", [])]
    groups = list(get("groups", None) or []) or [{"methods": [], "seeds": None, "shots": None}]
    out, seen = [], set()
    for group in groups:
        names = list(group.get("methods") or []) or methods
        seeds = group.get("seeds")
        shots_list = group.get("shots")
        for seed in get("seeds", [0]) if seeds is None else seeds:
            for shots in get("shots", [1]) if shots_list is None else shots_list:
                for mode in get("modes", []):
                    for name in methods:  # the campaign's method order
                        key = (int(seed), int(shots), mode, name)
                        if name in names and key not in seen:
                            seen.add(key)
                            out.append(key)
    return out


def _run_id(method, mode: str, shots: int, seed: int, work: Path, results: Path) -> str:
    """``<mode>_<shots>shot_<method>_seed<seed>``: under the method's name, or under an
    earlier name (``aliases``) where a run was recorded or started under it."""
    ids = [f"{mode}_{shots}shot_{slug(n)}_seed{seed}" for n in [method.name, *method.get("aliases", [])]]
    for run_id in ids:
        if (results / run_id / "results.json").is_file() or (work / run_id / "config.yaml").is_file():
            return run_id
    return ids[0]


def plan_campaign(
    campaign: DictConfig,
    work_dir: str | Path,
    results_dir: str | Path,
    data_root: str = "data",
    progress: bool = True,
) -> list[PlannedRun]:
    """The runs of ``campaign`` in the order of :func:`planned_settings`."""
    validate_campaign(campaign)
    budget = campaign.budget
    by_name = {m.name: m for m in campaign.methods}
    runs = []
    for seed, shots, mode, name in planned_settings(campaign):
        method = by_name[name]
        run_id = _run_id(method, mode, shots, seed, Path(work_dir) / campaign.name, Path(results_dir) / campaign.name)
        overrides = [
            f"mode={mode}",
            f"learner={method.learner}",
            f"modulation={method.modulation}",
            f"multi={str(bool(method.multi)).lower()}",
            f"episode.ways={campaign.ways}",
            f"episode.shots={shots}",
            f"train.seed={seed}",
            f"data.image_size={budget.image_size}",
            f"train.iterations={budget.iterations}",
            f"train.checkpoint_every={budget.checkpoint_every}",
            f"train.log_every={budget.log_every}",
            f"eval.tasks_per_mode={budget.eval_tasks_per_mode}",
            f"eval.val_every={budget.val_every}",
            f"eval.val_tasks_per_mode={budget.val_tasks_per_mode}",
            f"eval.checkpoint={budget.eval_checkpoint}",
        ]
        if budget.meta_batch_size:
            overrides.append(f"train.meta_batch_size={budget.meta_batch_size}")
        if campaign.get("imports"):
            overrides.append(f"imports=[{','.join(campaign.imports)}]")
        overrides += list(campaign.overrides) + list(method.overrides)
        runs.append(
            PlannedRun(
                run_id=run_id,
                method=method.name,
                mode=mode,
                shots=int(shots),
                seed=int(seed),
                overrides=overrides,
                run_dir=Path(work_dir) / campaign.name / run_id,
                record_dir=Path(results_dir) / campaign.name / run_id,
                data_root=str(data_root),
                extra=[f"train.progress={str(bool(progress)).lower()}"],
            )
        )
    return runs
