"""Hand a campaign's missing runs to a Hydra launcher (``scripts/reproduce.py
campaign=<name> launcher=submitit_slurm``): one job per run, all in one launch (a SLURM
job array with the submitit launcher), each job training into its run's own directory
with ``resume=auto``, so a requeued job, or the same campaign launched again, continues
the run where it stopped. The campaign waits for the jobs and records the finished runs
as it records the runs it trains itself (:mod:`kml.campaign.runner`).
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from kml.campaign.plan import PlannedRun
from kml.errors import KmlError
from kml.io import atomic_write_json

#: what a launched job leaves in its run directory when it finishes: its training time
#: and its machine (what the run's record says)
JOB_RECORD = "job.json"

logger = logging.getLogger(__name__)

__all__ = ["JobOutcome", "TrainJob", "check_launcher", "compose_launcher_config", "job_overrides", "launch_runs",
           "train_command"]

#: the Hydra task name of the jobs: their messages go to ``<run directory>/train.log``, as ``kml-train``'s do
JOB_NAME = "train"

#: the settings ``launcher_overrides`` may set: the launcher's own
_SETTINGS = "hydra.launcher."


@dataclass
class JobOutcome:
    """What a run's job reported: its training time and machine when it finished, else
    the one-line reason it did not."""

    seconds: float | None = None
    machine: dict | None = None
    error: str | None = None


def _value(text: str) -> str:
    """``text`` (a folder) as the value of a Hydra override: quoted, so that it is read
    back as this string whatever it holds (Hydra's escapes: a quote, and the backslashes
    before a quote or at the end)."""
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text).replace("'", "\\'")
    return f"'{escaped}'"


def check_launcher(launcher: str | None, overrides: list[str]) -> None:
    """Refuse launcher settings without a launcher, and overrides that are not settings
    of the launcher (the runs' own config is the campaign's)."""
    if overrides and not launcher:
        raise KmlError(
            "launcher_overrides are settings of a launcher, but launcher is not set; pass launcher=<name> "
            "(e.g. launcher=submitit_slurm), or drop launcher_overrides to train the runs here"
        )
    for override in overrides:
        if not str(override).lstrip("+~").startswith(_SETTINGS):
            raise KmlError(
                f"launcher_overrides holds {override!r}, which is not a launcher setting; write each as "
                f"{_SETTINGS}<key>=<value> (e.g. {_SETTINGS}partition=gpu); the runs' own settings are the campaign's"
            )


def job_overrides(run: PlannedRun) -> list[str]:
    """The overrides of ``run``'s job: the run's own, ``resume=auto``, and the run
    directory (absolute: a job may start in another folder) as the job's folder."""
    run_dir = run.run_dir.resolve()
    return [*run.train_overrides(), "resume=auto", f"hydra.sweep.dir={_value(str(run_dir.parent))}",
            f"hydra.sweep.subdir={_value(run_dir.name)}"]


def train_command(run: PlannedRun) -> str:
    """The ``scripts/train.py`` command that does what ``run``'s job does: start the run
    in its directory, or continue it there."""
    return (f"{run.command()} data.root={shlex.quote(run.data_root)} resume=auto "
            f"hydra.run.dir={shlex.quote(str(run.run_dir))}")


def compose_launcher_config(launcher: str, overrides: list[str], folder: Path, name: str):
    """The config a launcher is set up with (the run config, with ``hydra/launcher=
    <launcher>`` and its settings ``overrides``), and the config loader that composed it
    (each job composes its own config with it).

    ``folder`` holds the launcher's own records (submitit's ``.submitit/``); ``name``
    names the jobs (the SLURM job name), unless ``overrides`` set it.

    Raises:
        KmlError: an unknown launcher or setting, or a launcher plugin that is not
            installed (the line names the extra that installs it).
    """
    from hydra.core.global_hydra import GlobalHydra

    from kml.config.compose import compose_run_config, hydra_initialized

    check_launcher(launcher, overrides)
    folder = Path(folder).resolve()
    base = [f"hydra/launcher={launcher}", f"hydra.job.name={JOB_NAME}", f"hydra.sweep.dir={_value(str(folder))}"]
    with hydra_initialized():
        settings = compose_run_config(base, return_hydra_config=True).hydra.launcher
        for override in overrides:
            key = override.split("=", 1)[0].lstrip("+~")[len(_SETTINGS):].split(".")[0]
            if key not in settings:
                raise KmlError(
                    f"launcher_overrides: {launcher} has no setting {key!r}; its settings: "
                    f"{', '.join(k for k in settings if not k.startswith('_'))}"
                )
        cfg = compose_run_config([*base, *overrides], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
    settings = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    if settings.get("name") == "${hydra.job.name}":  # submitit's default job name would be "train"
        with open_dict(cfg):
            cfg.hydra.launcher.name = name
    return cfg, loader


@dataclass
class TrainJob:
    """The task of every job: ``kml-train``'s run, in the job's folder (the run's own
    directory, ``resume=auto``), recording ``command`` (the campaign's) as the command
    that made it. Returns the seconds it trained and the machine it ran on.

    Raises:
        KmlError: the run failed (its message; any other error becomes one too, after its
            traceback went to the run's ``train.log``), so that the job reports it.
    """

    command: list[str]

    def __call__(self, cfg: DictConfig) -> dict:
        from hydra.core.hydra_config import HydraConfig

        from kml.campaign.records import machine_description
        from kml.data import tune_cpu_allocator
        from kml.engine.device import resolve_device
        from kml.engine.runs import run_training

        hydra_cfg = HydraConfig.get()
        tune_cpu_allocator()
        overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
        started = time.perf_counter()
        try:
            run_training(cfg, hydra_cfg.runtime.output_dir, overrides=overrides, command=self.command)
        except KmlError as err:
            logger.error(f"error: {err}")
            raise KmlError(str(err)) from None  # a plain KmlError travels back to the campaign, whatever its type
        except Exception as err:
            logger.exception("the run failed")
            raise KmlError(f"{type(err).__name__}: {err} (the traceback is in its train.log)") from None
        outcome = {"seconds": time.perf_counter() - started, "machine": machine_description(resolve_device(cfg.device))}
        # also in the run directory: a launcher that loses the jobs' results (a killed job
        # makes submitit's launch raise) must not cost the finished runs their machine
        atomic_write_json(Path(hydra_cfg.runtime.output_dir) / JOB_RECORD, outcome)
        return outcome


def _line(err: BaseException) -> str:
    """The first line of ``err``'s message, after its type unless it is a user error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, KmlError) and lines:
        return lines[0]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def launch_runs(runs: list[PlannedRun], launcher: str, overrides: list[str], folder: Path, name: str,
                log=logger.info) -> dict[str, JobOutcome]:
    """Run each of ``runs`` as a job of ``launcher`` (a ``hydra/launcher`` option, with
    its settings ``overrides``), all in one launch, and wait for them.

    Returns:
        each run's :class:`JobOutcome`, by run id. A job that failed has its error line;
        so does every job whose outcome the launcher could not report (e.g. its process
        was killed), unless its run finished nonetheless.
    """
    from hydra._internal.callbacks import Callbacks
    from hydra.core.plugins import Plugins
    from hydra.core.utils import JobStatus
    from hydra.types import HydraContext

    from kml.campaign.plan import FINISHED

    cfg, loader = compose_launcher_config(launcher, overrides, folder, name)
    jobs = [job_overrides(run) for run in runs]
    log(f"\nlauncher {launcher}: {len(runs)} job{'s' if len(runs) != 1 else ''}, one per run "
        f"(the launcher's own records go to {folder}):")
    for i, run in enumerate(runs):
        log(f"  #{i}: {run.run_id} in {run.run_dir}")
    try:
        launcher_obj = Plugins.instance().instantiate_launcher(
            hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks(cfg)),
            task_function=TrainJob(list(sys.argv)),
            config=cfg,
        )
    except Exception as err:
        raise KmlError(f"launcher={launcher} cannot be set up ({_line(err)}); check launcher_overrides") from None
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # a launcher running jobs in this process reconfigures logging
    try:
        returns = list(launcher_obj.launch(jobs, initial_job_idx=0))
        failure = None
    except Exception as err:  # e.g. a job whose process died: the launcher reports no job at all
        returns, failure = [], _line(err)
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    outcomes = {}
    for i, run in enumerate(runs):
        ret = returns[i] if i < len(returns) else None
        if ret is not None and ret.status == JobStatus.COMPLETED:
            outcomes[run.run_id] = JobOutcome(**ret.return_value)
        elif ret is not None and ret.status == JobStatus.FAILED:
            outcomes[run.run_id] = JobOutcome(error=_line(ret._return_value))
        elif run.status() == FINISHED:  # it finished, but its job's report was lost
            outcomes[run.run_id] = JobOutcome()
        else:
            outcomes[run.run_id] = JobOutcome(
                error=f"the launcher reported no outcome of its job ({failure or 'none'}); it may still be running"
            )
    return outcomes
