"""The meta-training loop of one learner: sample, meta-update, log, checkpoint.

Exact resume: a checkpoint holds the model, the optimisers, the schedulers, the
sampler's RNG state and the global torch RNG states, so a run killed at any
point and resumed from its last checkpoint draws the same episodes and (on CPU,
with deterministic algorithms) ends with bit-identical parameters.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from kml.commands import command
from kml.engine.checkpoints import BEST, check_state_dict, save_checkpoint, save_checkpoint_as
from kml.engine.device import use_cuda_graphs
from kml.engine.distributed import DistributedContext
from kml.engine.evaluation import Validator
from kml.engine.loggers import MetricLoggers
from kml.engine.numerics import autocast_for
from kml.engine.optim import build_optimizers, build_schedulers
from kml.errors import KmlError
from kml.io import atomic_write_text
from kml.learners import MetaLearner, method_name, upgrade_state_dict

__all__ = ["Trainer", "NonFiniteLossError", "TrainingInterrupted", "VAL_TASK_ACCURACIES"]

#: per-task validation accuracies, one JSON line per validation:
#: ``{"iteration": i, "modes": {mode: [accuracy of val task 0, 1, ...] in [0, 1]}}``
VAL_TASK_ACCURACIES = "val_task_accuracies.jsonl"


class NonFiniteLossError(KmlError):
    """The meta-loss became NaN or infinite."""


class TrainingInterrupted(KmlError):
    """Ctrl-C / SIGTERM: a checkpoint was saved and the run can be resumed."""


class Trainer:
    """Meta-trains ``learner`` on episodes from ``sampler``.

    Args:
        cfg: the run config (``train.*``, ``episode.*``).
        learner: the meta-learner, already on ``device``.
        sampler: a :mod:`kml.data` sampler (``sample`` / ``sample_mode`` / ``state_dict``,
            ``mode_names``: the modes metrics are kept per).
        run_dir: where ``metrics.jsonl`` and ``checkpoints/`` go.
        device: the device ``learner`` is on.
        vectorized: tasks as one vectorised computation (``True``) or the per-task loop.
        mode: train on this mode only (Multi-* specialists); ``None``: the mixture.
        ctx: distributed context (tasks sharded across ranks).
        validator: validation every ``eval.val_every`` iterations (and at the last one):
            its result goes to ``metrics.jsonl`` as ``{"iteration", "val": {...}}``, each
            val task's accuracy to ``val_task_accuracies.jsonl`` (:data:`VAL_TASK_ACCURACIES`),
            and the best overall val accuracy so far is kept in ``checkpoints/best.pt``.
        loggers: the run's metric loggers (:class:`kml.engine.loggers.MetricLoggers`), fed
            every record written to ``metrics.jsonl``; ``None``: ``metrics.jsonl`` only.

    Each iteration's forward and backward is replayed as a CUDA graph
    (:class:`kml.engine.graphs.GraphedStep`) where ``train.cuda_graphs`` asks for it and the
    device allows it (:func:`kml.engine.device.use_cuda_graphs`).
    """

    def __init__(
        self,
        cfg: DictConfig,
        learner: MetaLearner,
        sampler,
        run_dir: Path,
        device: torch.device,
        vectorized: bool,
        mode: str | None = None,
        ctx: DistributedContext | None = None,
        validator: Validator | None = None,
        loggers: MetricLoggers | None = None,
    ) -> None:
        self.cfg = cfg
        self.loggers = loggers if loggers is not None and loggers.enabled else None
        self.learner = learner
        self.sampler = sampler
        self.run_dir = Path(run_dir)
        self.device = device
        self.mode_names = list(sampler.mode_names)
        self.vectorized = vectorized
        self.mode = mode
        self.ctx = ctx or DistributedContext()
        self.description = f"train {mode}" if mode else "train"
        self.optimizers = build_optimizers(learner, cfg)
        self.schedulers = build_schedulers(self.optimizers, cfg)
        self.iteration = 0
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.val_tasks_path = self.run_dir / VAL_TASK_ACCURACIES
        self._window: _Window | None = None  # metrics since the last log line, while fitting
        self._restored_window: dict | None = None
        self.validator = validator
        self.best: dict | None = None  # {"iteration", "accuracy"} of checkpoints/best.pt
        self.graphed = None
        # train.overfit_batches: the batches repeated, drawn from the sampler's state at the start
        self._fixed_batches: list | None = None
        self._initial_sampler_state = sampler.state_dict() if cfg.train.get("overfit_batches") else None
        if use_cuda_graphs(cfg.train.cuda_graphs, device, self.ctx.enabled):
            from kml.engine.graphs import GraphedStep

            self.graphed = GraphedStep(learner, ways=int(cfg.episode.ways), vectorized=vectorized,
                                       loss_divisor=int(cfg.train.meta_batch_size),
                                       precision=cfg.train.precision)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "iteration": self.iteration,
            "method": method_name(self.cfg.learner.name, self.cfg.modulation.name, bool(self.cfg.multi)),
            "mode_names": self.mode_names,
            "mode": self.mode or "",
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
            "model": self.learner.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "sampler": self.sampler.state_dict(),
            "rng": rng,
            "best": self.best,
            # metrics accumulated since the last log line (non-empty after a Ctrl-C stop); a
            # rank's own sums only, so not kept for multi-process runs
            "window": self._window.state_dict() if self._window is not None and not self.ctx.enabled else None,
        }

    def load_state_dict(self, state: dict, source: str) -> None:
        """Restore everything from a checkpoint (``source`` names it in errors)."""
        method = method_name(self.cfg.learner.name, self.cfg.modulation.name, bool(self.cfg.multi))
        state["model"] = upgrade_state_dict(state["model"], self.learner)
        check_state_dict(
            self.learner, state["model"], f"checkpoint {source}", methods=(str(state.get("method", "")), method)
        )
        if len(state["optimizers"]) != len(self.optimizers):
            raise KmlError(
                f"checkpoint {source} has {len(state['optimizers'])} optimisers, this run {len(self.optimizers)}"
            )
        self.learner.load_state_dict(state["model"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        for sched, s in zip(self.schedulers, state["schedulers"]):
            sched.load_state_dict(s)
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.iteration = int(state["iteration"])
        self.best = state.get("best")
        self._restored_window = state.get("window")
        if self.ctx.is_main:
            self._truncate_metrics(self.iteration)

    def save(self, keep_iteration: bool = True) -> Path | None:
        if not self.ctx.is_main:
            return None
        return save_checkpoint(self.run_dir, self.state_dict(), keep_iteration=keep_iteration)

    def _truncate_metrics(self, iteration: int) -> None:
        """Drop metric and per-task validation lines written after ``iteration`` (and a
        torn last line)."""
        for path in (self.metrics_path, self.val_tasks_path):
            if not path.is_file():
                continue
            kept = []
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("iteration", 0) <= iteration:
                    kept.append(line)
            atomic_write_text(path, "".join(k + "\n" for k in kept))

    # ------------------------------------------------------------------ loop
    def _sample(self, num_tasks: int):
        """The meta-batch of the next iteration: fresh tasks, or with ``train.overfit_batches``
        = N the first N meta-batches of the run, in turn (the same ones after a resume)."""
        repeat = int(self.cfg.train.get("overfit_batches", 0) or 0)
        if not repeat:
            return self._draw(num_tasks)
        if self._fixed_batches is None:
            current = self.sampler.state_dict()
            self.sampler.load_state_dict(self._initial_sampler_state)
            self._fixed_batches = [self._draw(num_tasks) for _ in range(repeat)]
            self.sampler.load_state_dict(current)
        return self._fixed_batches[self.iteration % repeat]

    def _draw(self, num_tasks: int):
        if self.mode is None:
            return self.sampler.sample(num_tasks)
        return self.sampler.sample_mode(self.mode, num_tasks)

    def fit(self) -> int:
        """Train from ``self.iteration`` to ``train.iterations``; returns the last iteration.

        Raises:
            NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).
            TrainingInterrupted: on Ctrl-C (or SIGTERM / SIGUSR1, see :func:`kml.cli.terminate_as_interrupt`):
                the current iteration is finished and checkpointed, so a resumed run
                continues exactly; a second Ctrl-C stops at once without saving.
        """
        cfg = self.cfg
        total = int(cfg.train.iterations)
        meta_batch = int(cfg.train.meta_batch_size)
        ways = int(cfg.episode.ways)
        num_modes = len(self.mode_names)
        params = [p for p in self.learner.parameters() if p.requires_grad]
        self.learner.train()

        window = _Window(num_modes, self.device)
        if self._restored_window:
            window.load_state_dict(self._restored_window)
            self._restored_window = None
        self._window = window
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        bar = tqdm(
            total=total,
            initial=self.iteration,
            desc=self.description,
            unit="it",
            disable=not (cfg.train.progress and self.ctx.is_main),
            dynamic_ncols=True,
        )
        stop = _StopRequest()
        self._stopped_by_peer = False
        if self.loggers is not None and self.ctx.is_main:
            self.loggers.begin(self.run_dir, self.mode_names, self.iteration, validation=self.validator is not None,
                               prefix=f"{self.mode}/" if self.mode else "")
        try:
            with stop:
                self._loop(total, meta_batch, ways, params, window, first_bad, bar, stop)
        except KeyboardInterrupt:
            # a second Ctrl-C (or one the loop could not defer): the iteration may be half
            # done, so nothing is saved; the last checkpoint stays the one to resume from
            bar.close()
            last = self.run_dir / "checkpoints" / "last.pt"
            kept = f"the last checkpoint {last} is kept" if last.is_file() else "no checkpoint had been saved yet"
            raise TrainingInterrupted(
                f"interrupted at once during iteration {self.iteration + 1}, without saving; {kept}; "
                f"continue with: {command('train')} resume={self.run_root()}"
            ) from None
        finally:
            bar.close()
            if self.loggers is not None and self.ctx.is_main:
                self.loggers.end()
        if stop.requested or self._stopped_by_peer:
            raise TrainingInterrupted(
                f"interrupted at iteration {self.iteration}; checkpoint saved to "
                f"{self.run_dir / 'checkpoints' / 'last.pt'}; "
                f"continue with: {command('train')} resume={self.run_root()}"
            )
        return self.iteration

    def _loop(self, total, meta_batch, ways, params, window, first_bad, bar, stop: "_StopRequest") -> None:
        cfg = self.cfg
        while self.iteration < total:
            batch = self._sample(meta_batch)
            part = self.ctx.shard(meta_batch)
            tasks = (batch.support[part], batch.support_labels[part], batch.query[part], batch.query_labels[part])
            if self.graphed is not None:  # forward + backward replayed; it overwrites the gradients
                loss, out = self.graphed(*tasks)
            else:
                with autocast_for(cfg.train.precision, self.device):
                    out = self.learner(*tasks, ways=ways, vectorized=self.vectorized)
                loss = out.task_losses.sum() / meta_batch
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
            stop_now = self.ctx.all_reduce_gradients(params, stop.requested)
            for opt in self.optimizers:
                opt.step()
            for sched in self.schedulers:
                sched.step()
            bad = ~torch.isfinite(loss.detach())
            first_bad = torch.where((first_bad < 0) & bad, torch.full_like(first_bad, self.iteration + 1), first_bad)
            window.add(out, batch.modes[part])
            self.iteration += 1
            bar.update(1)

            log_now = self.iteration % cfg.train.log_every == 0 or self.iteration == total
            save_now = self.iteration % cfg.train.checkpoint_every == 0 or self.iteration == total
            val_every = int(cfg.eval.val_every)
            val_now = self.validator is not None and val_every > 0 and (
                self.iteration % val_every == 0 or self.iteration == total
            )
            if log_now or save_now or val_now:
                self._check_finite(first_bad)
            if log_now:
                record = window.flush(self.iteration, self.ctx, self.mode_names, self.optimizers)
                if self.ctx.is_main and record is not None:
                    self._append_metrics(record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.1f}%")
            if val_now:
                started = time.perf_counter()
                self._validate()
                window.start += time.perf_counter() - started  # keep tasks_per_s a training speed
            if save_now:
                self._check_parameters()
                self.save(keep_iteration=True)
            if stop_now or stop.requested and not self.ctx.enabled:  # Ctrl-C / SIGTERM: stop here
                if not save_now:
                    self._check_finite(first_bad)
                    self._check_parameters()
                    self.save(keep_iteration=True)
                self._stopped_by_peer = not stop.requested
                return

    def _validate(self) -> None:
        """Validate, log the result and keep ``checkpoints/best.pt`` up to date."""
        result = self.validator(self.learner)
        if not self.ctx.is_main:
            return
        self._append_metrics({"iteration": self.iteration, "val": result})
        if self.validator.task_accuracies:  # the validation tasks one by one, so that runs pair on them
            record = {"iteration": self.iteration,
                      "modes": {mode: [round(a, 6) for a in accuracies]
                                for mode, accuracies in self.validator.task_accuracies.items()}}
            with open(self.val_tasks_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
        if self.best is None or result["accuracy"] > self.best["accuracy"]:
            self._check_parameters()
            self.best = {"iteration": self.iteration, "accuracy": result["accuracy"]}
            save_checkpoint_as(self.run_dir, self.state_dict(), BEST)

    def run_root(self) -> Path:
        """The run directory a user passes to ``resume=`` (the parent for specialists)."""
        return self.run_dir.parent.parent if self.run_dir.parent.name == "specialists" else self.run_dir

    def _check_finite(self, first_bad: torch.Tensor) -> None:
        bad_iteration = int(first_bad.item())
        if bad_iteration < 0:
            return
        raise self._non_finite(f"the meta-loss became NaN or infinite at iteration {bad_iteration}")

    def _check_parameters(self) -> None:
        """Never checkpoint NaN/inf parameters (a finite loss can still give an inf update)."""
        bad = [name for name, p in self.learner.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise self._non_finite(f"the parameters became NaN or infinite at iteration {self.iteration} ({shown})")

    def _non_finite(self, what: str) -> NonFiniteLossError:
        last = self.run_dir / "checkpoints" / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint had been saved yet"
        return NonFiniteLossError(
            f"{what}; {kept}; no results were written. "
            "Lower train.lr or learner.inner_lr (or set learner.grad_clip) and start again"
        )

    def _append_metrics(self, record: dict) -> None:
        """One record to ``metrics.jsonl`` and to every metric logger."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if self.loggers is not None:
            self.loggers.log(record)


_STOPPING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


class _StopRequest:
    """While training, Ctrl-C (and SIGTERM and SIGUSR1 where the entry point maps them to
    Ctrl-C) only sets :attr:`requested`; the loop finishes the iteration, checkpoints and
    stops, so the checkpoint is exactly resumable. A second signal raises
    KeyboardInterrupt at once. Handlers are installed only in the main thread, and only
    over Python's default Ctrl-C handler or :func:`kml.cli.terminate_as_interrupt`'s:
    other programs' handlers (a launcher's) are left alone."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in _STOPPING:
                handler = signal.getsignal(sig)
                if handler is signal.default_int_handler or getattr(handler, "kml_interrupt", False):
                    self._previous[sig] = handler
                    signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


class _Window:
    """Running sums of loss and per-mode accuracy between two log lines (on device)."""

    def __init__(self, num_modes: int, device: torch.device) -> None:
        self.num_modes = num_modes
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.acc_sum = torch.zeros(self.num_modes, dtype=torch.float64, device=self.device)
        self.count = torch.zeros(self.num_modes, dtype=torch.float64, device=self.device)
        self.start = time.perf_counter()

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum.cpu(), "acc_sum": self.acc_sum.cpu(), "count": self.count.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["count"].shape) != tuple(self.count.shape):
            return  # another number of modes: start the window afresh
        self.loss_sum = state["loss_sum"].to(self.device, torch.float64)
        self.acc_sum = state["acc_sum"].to(self.device, torch.float64)
        self.count = state["count"].to(self.device, torch.float64)

    def add(self, out, modes: torch.Tensor) -> None:
        modes = modes.to(self.device)
        self.loss_sum += out.task_losses.detach().double().sum()
        self.acc_sum.index_add_(0, modes, out.accuracy.detach().double())
        self.count.index_add_(0, modes, torch.ones_like(out.accuracy, dtype=torch.float64))

    def flush(self, iteration: int, ctx: DistributedContext, mode_names: list[str], optimizers) -> dict | None:
        stats = torch.cat([self.loss_sum.reshape(1), self.acc_sum, self.count])
        if ctx.enabled:
            torch.distributed.all_reduce(stats)
        stats = stats.cpu()
        elapsed = time.perf_counter() - self.start
        loss_sum, acc_sum, count = stats[0], stats[1 : 1 + self.num_modes], stats[1 + self.num_modes :]
        tasks = float(count.sum())
        self.reset()
        if tasks == 0:
            return None
        per_mode = {
            name: 100.0 * float(acc_sum[i] / count[i]) for i, name in enumerate(mode_names) if count[i] > 0
        }
        return {
            "iteration": iteration,
            "loss": float(loss_sum / tasks),
            "accuracy": 100.0 * float(acc_sum.sum() / tasks),
            "per_mode": per_mode,
            "tasks_per_s": tasks / elapsed if elapsed > 0 else None,
            "lr": optimizers[0].param_groups[0]["lr"],
        }
