"""The command-line entry points and their shared plumbing.

Each entry point is a module with a ``main()`` installed as a console script
(``kml-train``, ``kml-eval``, ``kml-compare``, ``kml-transference``, ``kml-prepare``,
``kml-bench``, ``kml-reproduce``; ``scripts/*.py`` are thin wrappers of the same
functions). The configs they compose are found by :mod:`kml.config.compose` (``configs/``
of the checkout, or ``kml/configs`` of an installed wheel).
Process-wide settings (the SIGTERM handler, the CPU allocator tuning) are opted into
here, by the entry points, never by importing the library.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Callable

from kml.config.compose import CONFIG_DIR, compose_run_config, describe_hydra_error, register_resolvers
from kml.errors import KmlError

__all__ = [
    "CONFIG_DIR",
    "register_resolvers",
    "main_guard",
    "hydra_main",
    "terminate_as_interrupt",
    "STOP_SIGNALS",
    "compose_run_config",
]


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


def _prepare_composition() -> None:
    """Before Hydra composes a command's config: the resolvers, the modules of an
    ``imports=[...]`` override (a learner they register is a ``learner=`` option with its
    own keys) and the schemas and group options (:func:`kml.config.register_configs`)."""
    from kml.config import import_user_modules, register_configs
    from kml.config.imports import imports_in

    register_resolvers()
    try:
        import_user_modules(imports_in(sys.argv[1:]))
    except KmlError as err:
        _report_error(f"error: {err}")
        sys.exit(1)
    register_configs()


def _run_app(app: Callable, describe: Callable) -> None:
    """Run Hydra's ``app``; a composition error it raises that ``describe`` turns into one
    line is printed as ``error: <line>`` with exit status 1 (``HYDRA_FULL_ERROR=1``: Hydra's
    own report)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        app()
        return
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises; we print the one-line message
    try:
        app()
    except Exception as err:
        message = describe(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


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
            _prepare_composition()
            _run_app(app, lambda err: (None if any(err is e for e in raised_by_run)
                                       else describe_hydra_error(err, schema, sys.argv[1:])))

        return entry

    return decorate
