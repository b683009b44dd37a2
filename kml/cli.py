"""Shared plumbing of the command-line entry points (``scripts/*.py``)."""

from __future__ import annotations

import functools
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Callable

from kml.errors import KmlError

__all__ = ["CONFIG_DIR", "register_resolvers", "main_guard", "terminate_as_interrupt"]

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def register_resolvers() -> None:
    """OmegaConf resolvers used by ``configs/config.yaml`` (idempotent)."""
    from omegaconf import OmegaConf

    if OmegaConf.has_resolver("kml_run_dir"):
        return
    # resume=<dir> makes Hydra's run directory the resumed run's own directory
    OmegaConf.register_new_resolver("kml_run_dir", lambda resume, default: resume if resume else default)
    OmegaConf.register_new_resolver("kml_hydra_subdir", lambda resume: ".hydra_resume" if resume else ".hydra")
    # a per-process random suffix (cached: the same value wherever it is used)
    OmegaConf.register_new_resolver("kml_unique", lambda: secrets.token_hex(3), use_cache=True)


def terminate_as_interrupt() -> None:
    """Treat SIGTERM (cluster pre-emption, ``kill``) like Ctrl-C: checkpoint and exit."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


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

            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(130 if isinstance(err, TrainingInterrupted) else 1)

    return wrapper
