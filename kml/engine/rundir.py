"""The run directory: its config record, provenance, lock, and the config of a resumed run."""

from __future__ import annotations

import copy
import glob
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

import kml
from kml.config.run import saved_run_config
from kml.engine.distributed import DistributedContext
from kml.errors import KmlError
from kml.io import atomic_write_json, atomic_write_text

__all__ = [
    "find_run_dirs",
    "RESUMABLE_KEYS",
    "AUTO_RESUME",
    "load_config_file",
    "resume_config",
    "auto_resume_config",
    "RunLock",
    "check_writable",
    "code_state",
    "prepare_run_dir",
]

# keys a resumed run may change; anything else must match the run's saved config
RESUMABLE_KEYS = (
    "train.iterations",
    "train.checkpoint_every",
    "train.log_every",
    "train.progress",
    "train.vectorized",
    "train.cuda_graphs",
    "device",
    "data.root",
    "eval",
    "logger",
    "resume",
)

#: config groups that are presets of many keys (``configs/experiment``, ``configs/debug``):
#: they set up a new run, and a ``resume=`` of a run refuses them
PRESET_GROUPS = ("experiment", "debug")

#: ``resume=auto``: continue the run in the run directory if it holds one of the same
#: config, else start it there
AUTO_RESUME = "auto"


def load_config_file(path: str | Path) -> DictConfig:
    """A saved run config, checked against the schema (unknown keys are rejected; a record
    of kml 0.1 is read in today's form)."""
    try:
        return saved_run_config(OmegaConf.load(path))
    except Exception as err:  # omegaconf raises several error types
        raise KmlError(f"{path} is not a valid kml run config ({str(err).splitlines()[0]})") from None


def _differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain containers."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _allowed_on_resume(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


def resume_config(saved: DictConfig, composed: DictConfig, overrides: list[str]) -> DictConfig:
    """The config of a resumed run: the run's saved config, plus the command line's
    overrides of resumable keys (``train.iterations``, ``device``, ``eval.*``, ...).

    Raises:
        KmlError: an override changes anything else (listing each differing key with
            the run's and the new value).
    """
    saved_plain = OmegaConf.to_container(saved, resolve=True)
    composed_plain = OmegaConf.to_container(composed, resolve=True)
    merged = copy.deepcopy(saved)
    conflicts = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra") or key == "resume":
            continue
        if key in PRESET_GROUPS:  # a preset sets many keys at once: it describes a new run
            conflicts.append(f"{override} chooses the settings of a new run, which a resumed run keeps")
            continue
        if key in ("learner", "modulation", "mode", "protocol"):
            # a config-group choice: compare the choice itself
            before, after = saved[key].name, composed[key].name
            if before != after:
                conflicts.append(f"{key} is {before!r} in the run but {after!r} now")
            continue
        for top in [key]:
            a = OmegaConf.select(OmegaConf.create(saved_plain), top)
            b = OmegaConf.select(OmegaConf.create(composed_plain), top)
            a = OmegaConf.to_container(a) if isinstance(a, DictConfig) else a
            b = OmegaConf.to_container(b) if isinstance(b, DictConfig) else b
            for diff in _differences(a, b, top + "."):
                if _allowed_on_resume(diff):
                    OmegaConf.update(merged, diff, OmegaConf.select(composed, diff), merge=False)
                elif not _allowed_on_resume(diff):
                    conflicts.append(
                        f"{diff} is {OmegaConf.select(saved, diff)!r} in the run "
                        f"but {OmegaConf.select(composed, diff)!r} now"
                    )
    if conflicts:
        raise KmlError(
            "resume points at a run with a different config: "
            + "; ".join(sorted(set(conflicts)))
            + ". Drop these overrides to resume it, or start a new run without resume="
        )
    merged.resume = composed.resume
    return merged


def auto_resume_config(saved: DictConfig, composed: DictConfig, run_dir: Path) -> DictConfig:
    """The config of a ``resume=auto`` run that continues the run saved in ``run_dir``:
    the saved config, with the composed config's values of the keys a resumed run may
    change (:data:`RESUMABLE_KEYS`: more iterations, another device, a logger, ...).

    Raises:
        KmlError: any other key differs (each is listed with the run's and the new value).
    """
    saved_plain = OmegaConf.to_container(saved, resolve=True)
    composed_plain = OmegaConf.to_container(composed, resolve=True)
    merged = copy.deepcopy(saved)
    conflicts = []
    for key in _differences(saved_plain, composed_plain):
        if _allowed_on_resume(key):
            OmegaConf.update(merged, key, OmegaConf.select(composed, key), merge=False)
        else:
            conflicts.append(
                f"{key} is {OmegaConf.select(saved, key)!r} in the run but {OmegaConf.select(composed, key)!r} now"
            )
    if conflicts:
        raise KmlError(
            f"resume=auto: {run_dir} holds a run with a different config ({'; '.join(conflicts)}); "
            "run the same command as that run to continue it, or choose another hydra.run.dir for this config"
        )
    merged.resume = AUTO_RESUME
    return merged


def _git(*args: str, root: Path | None = None) -> str | None:
    """``git <args>`` in ``root`` (default: the checkout the library runs from); ``None``
    when git or the checkout is not there."""
    try:
        root = Path(kml.__file__).resolve().parent.parent if root is None else root
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


#: what a run's result depends on: the library, its configs, the entry scripts and the
#: package metadata. Records, reports and docs (which campaigns rewrite) are not code.
CODE_PATHS = ("kml", "configs", "scripts", "pyproject.toml")


def _git_dirty() -> bool | None:
    """Whether the code (:data:`CODE_PATHS`) has uncommitted changes: a changed tracked file
    or a new file git does not ignore (a module never added is code the commit lacks).
    None: no git. Changed records under ``results/`` or a rewritten ``docs/results.md``
    do not count: a campaign writes those itself between its runs."""
    status = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    return None if status is None else bool(status)


class RunLock:
    """An exclusive lock on a run directory (``<run_dir>/.lock``) for as long as a run
    writes to it: a second run, or a ``resume=`` of a run that is still going, is
    refused instead of interleaving its writes. The operating system releases it
    when the process ends, however it ends (no stale locks after a kill). The lock is
    ``filelock``'s native one (``flock`` on POSIX, ``LockFileEx`` on Windows); the file
    names the process holding it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._file = None

    def acquire(self) -> "RunLock":
        from filelock import lock_descriptor

        handle = open(self.path, "a+", encoding="utf-8")
        try:
            locked = lock_descriptor(handle.fileno(), blocking=False)
        except OSError:
            locked = False
        if not locked:
            try:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
            except OSError:  # Windows: the holder's lock covers the text
                owner = "another process"
            handle.close()
            raise KmlError(
                f"{self.path.parent} is in use by another run ({owner}); wait for it to finish "
                "(or stop it), or choose another output directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None


def check_writable(
    run_dir: Path,
    fix: str = "choose a writable place with hydra.run.dir=/path/to/run (or run from a writable folder)",
) -> None:
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=run_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise KmlError(
            f"output directory {run_dir} is not writable ({err.strerror}); {fix}"
        ) from None


def code_state() -> dict:
    """The library's code at this moment: ``{"git_commit", "git_dirty"}`` (``None`` when
    it does not run from a git checkout)."""
    return {"git_commit": _git_commit(), "git_dirty": _git_dirty()}


def prepare_run_dir(
    run_dir: Path, cfg: DictConfig, resuming: bool, ctx: DistributedContext, data: dict | None = None,
    command: list[str] | None = None,
) -> None:
    """Create/check the run directory and record the config and provenance.

    ``run_info.json`` records the versions, the code (commit, uncommitted changes), the
    seed, the host and the command (``command``, default ``sys.argv``), and ``data``
    (:func:`kml.data.provenance.data_provenance`).
    A resumed run keeps the first session's record and appends one entry per resume to
    ``resumes`` with that session's code and data hashes, so a run continued on other
    code or data says so.
    """
    check_writable(run_dir)
    if not ctx.is_main:
        return
    config_path = run_dir / "config.yaml"
    if config_path.exists() and not resuming:
        raise KmlError(
            f"{run_dir} already holds a run (config.yaml exists); pass resume={run_dir} to continue it, "
            "or choose another output directory"
        )
    atomic_write_text(config_path, OmegaConf.to_yaml(cfg, resolve=True))
    info_path = run_dir / "run_info.json"
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    code = code_state()
    info = {
        "kml_version": kml.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        **code,
        "seed": int(cfg.train.seed),
        "hostname": socket.gethostname(),
        "command": list(sys.argv if command is None else command),
        "started": started,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    if data is not None:
        info["data"] = data
    if info_path.exists():
        previous = json.loads(info_path.read_text())
        session = {"started": started, **code, "hostname": info["hostname"], "torch_version": torch.__version__}
        if data is not None:
            session["data_sha256"] = {name: entry.get("sha256") for name, entry in data.items()}
        info = {
            **previous,
            "resumed": previous.get("resumed", []) + [started],
            "resumes": previous.get("resumes", []) + [session],
        }
    atomic_write_json(info_path, info)


def find_run_dirs(patterns: list[str], marker: str, missing_fix: str) -> list[Path]:
    """Run directories named by ``patterns`` (paths or globs, in order, each once).

    A directory counts when it holds ``marker`` (``config.yaml``, ``results.json``);
    a path to the marker file itself names its folder. Folders a glob matches
    without the marker are skipped; a plain path without it is an error whose
    message ends with ``missing_fix`` (``{path}`` is filled in).

    Raises:
        KmlError: a pattern matches nothing, a plain path lacks ``marker``, or no run
            directory is found at all.
    """
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        is_glob = glob.has_magic(text)
        matches = sorted(glob.glob(text)) if is_glob else ([text] if Path(text).exists() else [])
        if not matches:
            raise KmlError(
                f"run_dirs pattern {pattern!r} matches nothing; "
                "pass existing run directories or a glob like 'outputs/*/*'"
            )
        for match in matches:
            path = Path(match)
            if path.is_file() and path.name == marker:
                path = path.parent
            if not (path / marker).is_file():
                if is_glob:
                    continue  # a glob may also match folders that are not runs
                raise KmlError(f"{path} has no {marker}; " + missing_fix.format(path=path))
            if path not in found:
                found.append(path)
    if not found:
        raise KmlError(f"no run directory with {marker} found under {', '.join(map(str, patterns))}")
    return found
