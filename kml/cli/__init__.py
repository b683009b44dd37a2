"""The command-line entry points and their shared plumbing.

Each entry point is a module with a ``main()`` installed as a console script
(``kml-train``, ``kml-eval``, ``kml-compare``, ``kml-transference``, ``kml-prepare``,
``kml-bench``, ``kml-reproduce``; ``scripts/*.py`` are thin wrappers of the same
functions). The configs they compose ship inside the package (``kml/configs``).
Process-wide settings (the SIGTERM handler, the CPU allocator tuning) are opted into
here, by the entry points, never by importing the library.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Callable

from kml.errors import KmlError, MissingExtraError

__all__ = [
    "CONFIG_DIR",
    "register_resolvers",
    "main_guard",
    "hydra_main",
    "terminate_as_interrupt",
    "STOP_SIGNALS",
    "compose_run_config",
]

def _config_dir() -> str:
    from importlib.resources import files

    return str(files("kml.configs"))


#: the folder of the shipped Hydra configs (inside the installed package)
CONFIG_DIR = _config_dir()


def register_resolvers() -> None:
    """OmegaConf resolvers used by ``configs/config.yaml`` (idempotent)."""
    from omegaconf import OmegaConf

    if OmegaConf.has_resolver("kml_run_dir"):
        return
    # resume=<dir> makes Hydra's run directory the resumed run's own directory (resume=auto
    # keeps hydra.run.dir: the run continues wherever the command says)
    OmegaConf.register_new_resolver(
        "kml_run_dir", lambda resume, default: resume if resume and resume != "auto" else default
    )
    OmegaConf.register_new_resolver("kml_hydra_subdir", _hydra_subdir)
    # a per-process random suffix (cached: the same value wherever it is used)
    OmegaConf.register_new_resolver("kml_unique", lambda: secrets.token_hex(3), use_cache=True)


def _hydra_subdir(resume, output_dir=None) -> str:
    """Hydra's record folder in the run directory: ``.hydra`` (``.hydra_resume`` for a
    resumed run), or ``<that>_2``, ``_3``, ... when it exists, so nothing is overwritten."""
    base = ".hydra_resume" if resume and resume != "auto" else ".hydra"
    if not output_dir:
        return base
    name, n = base, 2
    while (Path(str(output_dir)) / name).exists():
        name, n = f"{base}_{n}", n + 1
    return name


#: the signals a cluster sends before it ends a job: SIGTERM (``scancel``, pre-emption,
#: ``kill``) and SIGUSR1, the one to ask for with ``sbatch --signal=USR1@<seconds>``
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


def terminate_as_interrupt() -> None:
    """Treat SIGTERM and SIGUSR1 like Ctrl-C: finish the iteration, checkpoint, exit 130.

    A handler is installed only where the signal still has its default action: a
    launcher that handles them itself (submitit installs its own SIGTERM and SIGUSR2
    handlers for its checkpoint-and-requeue) keeps its handlers.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt

    handler.kml_interrupt = True  # the trainer defers it to the end of an iteration too
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, handler)


def main_guard(fn: Callable) -> Callable:
    """Run ``fn``; a :class:`KmlError` becomes one ``error: ...`` line on stderr and exit
    status 1 (130 for an interrupted run), with no traceback. Other exceptions are bugs
    and keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KmlError as err:
            from kml.engine.trainer import TrainingInterrupted

            _report_error(f"error: {err}")
            sys.exit(130 if isinstance(err, TrainingInterrupted) else 1)
        except KeyboardInterrupt:
            _report_error("error: interrupted (Ctrl-C)")
            sys.exit(130)

    return wrapper


def _report_error(line: str) -> None:
    """``line`` on stderr, and in the log files of the command (a run's ``train.log``),
    but not a second time on the terminal."""
    import logging

    print(line, file=sys.stderr, flush=True)
    record = logging.LogRecord("kml", logging.ERROR, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def hydra_main(config_name: str, schema: type | None = None) -> Callable:
    """``@hydra.main`` (``configs/<config_name>.yaml``) plus :func:`main_guard`, with
    Hydra's own errors made one line too.

    An unknown key (``train.iteratons=5``), an unknown group option (``mode=foo``), a
    value of the wrong type or an unparsable override prints ``error: ...`` naming the
    valid keys or options, and exits with status 1, without a traceback; so does an
    output directory that Hydra cannot create. ``schema`` (the config dataclass) is
    used to list the valid keys. ``HYDRA_FULL_ERROR=1`` restores Hydra's full
    tracebacks. Errors raised inside the run keep :func:`main_guard`'s handling (a
    bug keeps its traceback).
    """
    import hydra

    def decorate(fn: Callable) -> Callable:
        raised_by_run: list[BaseException] = []  # errors of the run itself keep their traceback
        guarded = main_guard(fn)

        @functools.wraps(fn)
        def task(cfg):
            try:
                return guarded(cfg)
            except BaseException as err:
                raised_by_run.append(err)
                raise

        app = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(task)

        @functools.wraps(fn)
        def entry() -> None:
            from kml.config import register_configs

            register_resolvers()
            register_configs()
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                app()
                return
            previous = os.environ.get("HYDRA_FULL_ERROR")
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises; we print the one-line message
            try:
                app()
            except Exception as err:
                message = None if any(err is e for e in raised_by_run) else describe_hydra_error(err, schema)
                if message is None:
                    raise
                print(f"error: {message}", file=sys.stderr, flush=True)
                sys.exit(1)
            finally:
                if previous is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = previous

        return entry

    return decorate


def _lines(err: BaseException) -> list[str]:
    return [line.strip() for line in str(err).strip().splitlines() if line.strip()]


#: ``(config group, option)`` of the Hydra plugins the extras install: (plugin, extra)
_PLUGIN_EXTRAS = {
    ("hydra/launcher", "submitit_slurm"): ("submitit launcher", "slurm"),
    ("hydra/launcher", "submitit_local"): ("submitit launcher", "slurm"),
    ("hydra/sweeper", "optuna"): ("Optuna sweeper", "optuna"),
}


def describe_hydra_error(err: BaseException, schema: type | None = None) -> str | None:
    """One line for an error raised by Hydra while composing the config or creating the
    output directory (before the run starts); ``None`` if it is not one of those."""
    import re

    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    from kml.config import unknown_key_message

    lines = _lines(err)
    first = lines[0] if lines else type(err).__name__
    if isinstance(err, MissingConfigException):
        found = re.search(r"Could not (?:find|load) '([^']*)/([^']*)'", first)
        if found:
            group, option = found.groups()
            extra = _PLUGIN_EXTRAS.get((group, option))
            if extra is not None:  # a Hydra plugin of an optional extra, not installed
                plugin, name = extra
                return str(MissingExtraError(f"{group}={option}", f"Hydra's {plugin} plugin", name))
            options = list(err.options or [])
            if not options:  # Hydra lists options only for some failures
                options = _group_options(group)
            valid = f"; valid options for {group}: {', '.join(options)}" if options else ""
            return f"{group}={option} is not a known option{valid}"
        return f"{first}; check the config name and group options (configs/)"
    if isinstance(err, OverrideParseException):
        detail = "; ".join(line for line in lines[1:] if not line.startswith("See "))
        return (
            f"cannot parse the override {first.split(' ', 3)[-1]}: {detail or 'invalid syntax'}; "
            "write overrides as key=value (e.g. train.iterations=100)"
        )
    if isinstance(err, HydraException):
        cause = err.__cause__
        required = re.search(r"You must specify '([^']*)'", first)
        if required:
            group = required.group(1)
            options = _group_options(group)
            valid = f"; available: {', '.join(options)}" if options else ""
            return f"{group} is required: pass {group}=<name>{valid}"
        override = re.search(r"Could not override '([^']*)'", first)
        if override or isinstance(cause, ConfigKeyError):
            key = override.group(1) if override else getattr(cause, "full_key", "") or first
            if schema is not None:
                return unknown_key_message(key, schema)
            return f"unknown config key {key!r}"
        merging = re.search(r"Error merging override (.*)", first)
        if merging and isinstance(cause, OmegaConfBaseException):
            detail = _lines(cause)[0] if _lines(cause) else type(cause).__name__
            return f"invalid value in {merging.group(1)}: {detail}; pass a value of the key's type"
        detail = "; ".join(lines)
        if isinstance(cause, OmegaConfBaseException) and _lines(cause):
            detail += f" ({_lines(cause)[0]})"
        return detail
    if isinstance(err, OmegaConfBaseException):
        key = getattr(err, "full_key", None)
        return f"invalid config{f' at {key}' if key else ''}: {first}"
    if isinstance(err, OSError) and err.filename:  # Hydra creating the run directory or its files
        where = err.filename
        return (
            f"cannot create the run directory {where} ({err.strerror or first}); "
            "choose a writable place with hydra.run.dir=/path/to/run (or run from a writable folder)"
        )
    return None


def compose_run_config(overrides: list[str]):
    """The run config that ``python scripts/train.py <overrides>`` composes (inside a
    running Hydra app, or standalone).

    Raises:
        KmlError: an override names an unknown key or option, or cannot be parsed.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from kml.config import RunConfig, register_configs

    register_resolvers()
    register_configs()
    try:
        if GlobalHydra.instance().is_initialized():
            return compose(config_name="config", overrides=list(overrides))
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    except Exception as err:
        message = describe_hydra_error(err, RunConfig)
        if message is None:
            raise
        raise KmlError(message) from None


def _group_options(group: str) -> list[str]:
    """The options of a config group: its yaml files and the ones registered in code."""
    from hydra.core.config_store import ConfigStore

    folder = Path(CONFIG_DIR) / group
    options = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    try:
        options |= {Path(name).stem for name in ConfigStore.instance().list(group)}
    except OSError:  # no such group in the store
        pass
    return sorted(options)
