"""Metric loggers beside ``metrics.jsonl``: CSV, TensorBoard and Weights & Biases.

The trainer writes one record per logged iteration to ``metrics.jsonl`` (and one per
validation); every logger of the ``logger`` config group is fed exactly those records
and only translates them:

========================  =========================================================
record key                scalar tag (CSV column, TensorBoard tag, W&B key)
========================  =========================================================
``loss``                  ``train/loss``
``accuracy``              ``train/accuracy`` (%)
``per_mode[m]``           ``train/accuracy/<m>``
``lr``                    ``train/lr``
``tasks_per_s``           ``train/tasks_per_s``
``val.accuracy``          ``val/accuracy`` (%)
``val.ci95``              ``val/ci95``
``val.per_mode[m]``       ``val/accuracy/<m>``
========================  =========================================================

The step is the record's ``iteration``. A Multi-* specialist trains in its own folder
(``specialists/<mode>/``): its CSV and TensorBoard files are there, and its W&B keys
start with ``<mode>/``. A resumed run continues each logger: the CSV is rebuilt from the
(truncated) ``metrics.jsonl``, TensorBoard drops the events after the checkpoint
(``purge_step``) and W&B resumes the same run.
"""

from __future__ import annotations

import csv
import importlib.util
import secrets
import string
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kml.errors import KmlError, MissingExtraError
from kml.io import read_jsonl

__all__ = ["MetricLoggers", "record_scalars", "require_extra"]

def require_extra(module: str, extra: str, feature: str) -> None:
    """Raise one line naming the pip command when ``module`` (of ``extra``) is missing.

    Raises:
        MissingExtraError: ``module`` cannot be imported.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtraError(feature, f"the {module} package", extra)


def record_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The scalars of one ``metrics.jsonl`` record, by tag (see the module docstring)."""
    out: dict[str, float] = {}
    if "val" in record:
        val = record["val"]
        out["val/accuracy"] = float(val["accuracy"])
        if val.get("ci95") is not None:
            out["val/ci95"] = float(val["ci95"])
        for mode, entry in (val.get("per_mode") or {}).items():
            out[f"val/accuracy/{mode}"] = float(entry["accuracy"])
        return out
    for key in ("loss", "accuracy"):
        if record.get(key) is not None:
            out[f"train/{key}"] = float(record[key])
    for mode, accuracy in (record.get("per_mode") or {}).items():
        out[f"train/accuracy/{mode}"] = float(accuracy)
    for key in ("lr", "tasks_per_s"):
        if record.get(key) is not None:
            out[f"train/{key}"] = float(record[key])
    return out


class _CsvLogger:
    """One row per logged iteration: the training record and the validation of that
    iteration share a row (a row is written when the next iteration's record arrives,
    or when training stops)."""

    def __init__(self, path: Path, columns: list[str], earlier: list[dict]) -> None:
        self.path = path
        self.columns = ["iteration", *columns]
        self._pending: dict[str, Any] | None = None
        with open(self.path, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerow(self.columns)
        for record in earlier:  # the rows of a resumed run, rebuilt from metrics.jsonl
            self.log(record)
        self.flush()

    def log(self, record: dict) -> None:
        iteration = int(record["iteration"])
        if self._pending is not None and self._pending["iteration"] != iteration:
            self.flush()
        if self._pending is None:
            self._pending = {"iteration": iteration}
        self._pending.update(record_scalars(record))

    def flush(self) -> None:
        if self._pending is None:
            return
        row = [self._pending.get(column, "") for column in self.columns]
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            csv.writer(f).writerow(row)
        self._pending = None

    def close(self) -> None:
        self.flush()


class _TensorBoardLogger:
    def __init__(self, folder: Path, iteration: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run: events a previous session wrote after the checkpoint are dropped
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=iteration + 1 if iteration else None)

    def log(self, record: dict) -> None:
        step = int(record["iteration"])
        for tag, value in record_scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandbLogger:
    """Records of one trainer into the run's W&B run, keys prefixed by the specialist's mode."""

    def __init__(self, run, prefix: str) -> None:
        self.run = run
        self.prefix = prefix
        step = f"{prefix}iteration"
        run.define_metric(step)
        run.define_metric(f"{prefix}*", step_metric=step)

    def log(self, record: dict) -> None:
        scalars = {f"{self.prefix}{tag}": value for tag, value in record_scalars(record).items()}
        self.run.log({f"{self.prefix}iteration": int(record["iteration"]), **scalars})

    def close(self) -> None:
        pass


class MetricLoggers:
    """The metric loggers of one run, as ``cfg.logger`` says (rank 0 only).

    Created before training (a missing extra is reported before anything is trained);
    the trainer of each learner calls :meth:`begin` with its folder, :meth:`log` with
    each record it appends to ``metrics.jsonl``, and :meth:`end`; the run calls
    :meth:`close` at its end.

    Args:
        cfg: the run config (``cfg.logger``; W&B records the whole config).
        run_dir: the run directory.

    Raises:
        KmlError: a logger's extra is not installed (one line naming the pip command).
    """

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.settings = cfg.logger
        self.run_dir = Path(run_dir)
        self._config = OmegaConf.to_container(cfg, resolve=True)
        if self.settings.tensorboard is not None:
            require_extra("tensorboard", "tensorboard", "logger=tensorboard")
        if self.settings.wandb is not None:
            require_extra("wandb", "wandb", "logger=wandb")
        self._wandb_run = None
        self._active: list = []

    @property
    def enabled(self) -> bool:
        return any(self.settings[name] is not None for name in ("csv", "tensorboard", "wandb"))

    def begin(self, folder: str | Path, mode_names: list[str], iteration: int, *, validation: bool,
              prefix: str = "") -> None:
        """Open the loggers of one trainer writing to ``folder`` (its ``metrics.jsonl``,
        already truncated to ``iteration`` when resuming)."""
        self.end()
        folder = Path(folder)
        if self.settings.csv is not None:
            columns = ["train/loss", "train/accuracy", *[f"train/accuracy/{m}" for m in mode_names],
                       "train/lr", "train/tasks_per_s"]
            if validation:
                columns += ["val/accuracy", "val/ci95", *[f"val/accuracy/{m}" for m in mode_names]]
            earlier = read_jsonl(folder / "metrics.jsonl") if iteration else []
            self._active.append(_CsvLogger(folder / self.settings.csv.file, columns, earlier))
        if self.settings.tensorboard is not None:
            self._active.append(_TensorBoardLogger(folder / self.settings.tensorboard.dir, iteration))
        if self.settings.wandb is not None:
            self._active.append(_WandbLogger(self._wandb(), prefix))

    def log(self, record: dict) -> None:
        """One record, as appended to ``metrics.jsonl``."""
        for logger in self._active:
            logger.log(record)

    def end(self) -> None:
        """Close the current trainer's loggers (the CSV's last row is written)."""
        for logger in self._active:
            logger.close()
        self._active = []

    def close(self, status: str = "finished") -> None:
        """Close everything. ``status``: ``"finished"``, ``"interrupted"`` (stopped with a
        checkpoint, to be continued: the W&B run is marked pre-empted) or ``"failed"``."""
        self.end()
        if self._wandb_run is not None:
            if status == "interrupted":
                self._wandb_run.mark_preempting()
            self._wandb_run.finish(exit_code={"finished": 0, "interrupted": 130}.get(status, 1))
            self._wandb_run = None

    def _wandb(self):
        """The run's W&B run: started once, and resumed (same id) when the run is."""
        if self._wandb_run is not None:
            return self._wandb_run
        import wandb

        settings = self.settings.wandb
        folder = self.run_dir / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "kml_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        if not run_id:  # W&B's own kind of id: 8 lower-case letters and digits
            run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
            id_file.write_text(run_id + "\n")
        options: dict[str, Any] = dict(
            project=settings.project,
            entity=settings.entity,
            name=settings.name or self.run_dir.name,
            group=settings.group,
            tags=list(settings.tags) or None,
            config=self._config,
            dir=str(self.run_dir),
            id=run_id,
            resume="allow",
        )
        if settings.mode is not None:
            options["mode"] = settings.mode
        try:
            self._wandb_run = wandb.init(**options)
        except Exception as err:  # W&B raises its own error types (no login, no network, ...)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise KmlError(
                f"logger=wandb could not start a W&B run ({first}); run `wandb login`, or log offline with "
                "WANDB_MODE=offline (or logger.wandb.mode=offline)"
            ) from None
        return self._wandb_run
