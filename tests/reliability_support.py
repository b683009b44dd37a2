"""Helpers of the fault-injection tests (tests/test_reliability*.py).

- :func:`cli` runs an entry-point script *in this process* exactly as the command
  line does (``sys.argv``, Hydra, ``main_guard``) and returns its exit status and
  output: the user-visible behaviour without paying a Python + torch start-up.
- :func:`start_driver` starts a script in a *subprocess* under a small driver that
  first applies a patch (e.g. "hang while writing last.pt"), so that a real signal
  can be sent at a known point.
"""

from __future__ import annotations

import io
import os
import runpy
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
from fixtures_engine import REPO, SCRIPTS, TINY, TINY_MAML

__all__ = ["REPO", "SCRIPTS", "TINY", "TINY_MAML", "Result", "cli", "start_driver", "wait_for", "final_parameters",
           "same_parameters"]


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(script: str, *args: str, cwd: Path) -> Result:
    """Run ``scripts/<script> args...`` in this process; ``SystemExit`` becomes the code."""
    argv, old_cwd = sys.argv, os.getcwd()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    full_error = os.environ.pop("HYDRA_FULL_ERROR", None)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = [str(SCRIPTS / script), *args]
        with redirect_stdout(out), redirect_stderr(err):
            try:
                runpy.run_path(str(SCRIPTS / script), run_name="__main__")
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(old_cwd)
        for sig, handler in handlers.items():  # train.py maps SIGTERM and SIGUSR1 to Ctrl-C
            signal.signal(sig, handler)
        if full_error is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    return Result(code, out.getvalue(), err.getvalue())


_DRIVER = '''\
import os, runpy, sys, time
from pathlib import Path

MARKER = Path({marker!r})


def hang():
    """Tell the test we are at the point to kill, then wait to be killed."""
    MARKER.write_text(str(os.getpid()))
    time.sleep(600)
    raise SystemExit("driver: not killed")


{patch}

sys.argv = [{script!r}, *{args!r}]
runpy.run_path({script!r}, run_name="__main__")
'''


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_driver(
    tmp_path: Path, script: str, args: list[str], patch: str = "", name: str = "driver"
) -> tuple[subprocess.Popen, Path]:
    """Start ``scripts/<script> args`` in a subprocess after running ``patch`` (Python
    source that may call ``hang()``); returns the process and the marker file that
    ``hang()`` creates."""
    marker = tmp_path / f"{name}.at"
    source = _DRIVER.format(marker=str(marker), patch=textwrap.dedent(patch), script=str(SCRIPTS / script),
                            args=list(args))
    driver = tmp_path / f"{name}.py"
    driver.write_text(source)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    proc = subprocess.Popen(
        [sys.executable, str(driver)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # Ctrl-C as in a terminal, even when the tests themselves run in the background
        # (where SIGINT starts out ignored and Python installs no handler for it)
        preexec_fn=_default_sigint,
    )
    return proc, marker


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    """Poll ``condition()`` until true; fail if ``proc`` ends first or on timeout."""
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def final_parameters(run_dir: Path) -> dict:
    return torch.load(Path(run_dir) / "checkpoints" / "last.pt", weights_only=True)["model"]


def same_parameters(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
