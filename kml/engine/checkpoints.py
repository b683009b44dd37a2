"""Checkpoints: atomic save, safe load (``weights_only=True``), validation, run loading.

A checkpoint is a plain dict of tensors, numbers and strings, so it loads with
``torch.load(weights_only=True)``: a file crafted to run code when unpickled is
refused before anything runs. Files live in ``<run_dir>/checkpoints/`` as
``iter_00005000.pt`` (every ``train.checkpoint_every`` iterations) and
``last.pt`` (the most recent), each written atomically.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from kml.commands import command
from kml.errors import KmlError
from kml.io import atomic_write

__all__ = [
    "CheckpointError",
    "CHECKPOINT_FORMAT",
    "checkpoint_dir",
    "checkpoint_path",
    "save_checkpoint",
    "save_checkpoint_as",
    "BEST",
    "load_checkpoint",
    "list_checkpoints",
    "resolve_checkpoint",
    "check_state_dict",
    "LoadedRun",
    "checkpoint_config",
    "load_run",
]

CHECKPOINT_FORMAT = "kml-checkpoint-v1"
#: the file of the checkpoint with the best overall val accuracy (``eval.val_every > 0``)
BEST = "best.pt"
_ITER_FILE = re.compile(r"^iter_(\d+)\.pt$")


class CheckpointError(KmlError):
    """A checkpoint is missing, unreadable, unsafe or does not fit the model."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, iteration: int) -> Path:
    return checkpoint_dir(run_dir) / f"iter_{iteration:08d}.pt"


def _encode(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    return buffer.getvalue()


def save_checkpoint(run_dir: str | Path, state: dict[str, Any], keep_iteration: bool) -> Path:
    """Write ``state`` to ``last.pt`` (and ``iter_<n>.pt`` when ``keep_iteration``), atomically.

    ``state`` must hold an ``"iteration"`` and only tensors, containers and
    primitives (``weights_only``-loadable).

    The numbered file is written first: a run killed between the two writes keeps
    the previous ``last.pt``, and resuming from it writes ``iter_<n>.pt`` again, so
    no numbered checkpoint is ever missing from a resumed run.
    """
    data = _encode(state)
    folder = checkpoint_dir(run_dir)
    targets = [folder / "last.pt"]
    if keep_iteration:
        targets.insert(0, checkpoint_path(run_dir, int(state["iteration"])))
    for target in targets:
        atomic_write(target, lambda f: f.write(data))
    return targets[0]


def save_checkpoint_as(run_dir: str | Path, state: dict[str, Any], name: str) -> Path:
    """Write ``state`` atomically to ``<run_dir>/checkpoints/<name>`` (e.g. ``best.pt``)."""
    data = _encode(state)
    target = checkpoint_dir(run_dir) / name
    atomic_write(target, lambda f: f.write(data))
    return target


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", fix: str | None = None
) -> dict[str, Any]:
    """Load a checkpoint safely.

    ``fix`` replaces the advice given for a truncated or corrupt file.

    Raises:
        CheckpointError: the file does not exist, is truncated or corrupt, holds
            objects that are not plain data (refused, never executed), or is not
            a kml checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass an existing file (see {path.parent}/)")
    corrupt = fix or f"use another checkpoint of the run, e.g. an earlier iter_*.pt in {path.parent}/"
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (truncated); {corrupt}")
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # a zip (torch.save) or a pickle
        raise CheckpointError(
            f"{path} is not a kml checkpoint (not a PyTorch file); pass a file from a run's checkpoints/ folder"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = (
            f"loading it would call or import {found.group(1)}" if found else "it holds objects other than plain data"
        )
        raise CheckpointError(
            f"checkpoint {path} was refused and nothing in it was run: {what}, but a checkpoint "
            "may only hold tensors and plain data (it is malicious or from another program); "
            "load only checkpoints written by kml"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({_first_line(err)}); {corrupt}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a kml checkpoint (no '{CHECKPOINT_FORMAT}' marker); "
            "pass a file from a run's checkpoints/ folder"
        )
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    if not text:
        return type(err).__name__
    return text[0].split(". ")[0].rstrip(".")[:200]  # the first sentence


def list_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """``{iteration: path}`` of the numbered checkpoints of a run, sorted by iteration."""
    folder = checkpoint_dir(run_dir)
    found: dict[int, Path] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _ITER_FILE.match(path.name)
            if match:
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def resolve_checkpoint(run_dir: str | Path, checkpoint: int | str | None = None) -> Path:
    """The file meant by ``checkpoint``: ``None``/``"last"`` -> ``last.pt``, ``"best"`` ->
    ``best.pt`` (the best val accuracy), an iteration number -> ``iter_<n>.pt``, otherwise
    a path (absolute, or relative to the run)."""
    run_dir = Path(run_dir)
    if checkpoint == "best":
        path = checkpoint_dir(run_dir) / BEST
        if not path.is_file():
            raise CheckpointError(
                f"{run_dir} has no {BEST}: it is written only when the run validates during training "
                "(eval.val_every > 0); use checkpoint=last or an iteration number"
            )
        return path
    if checkpoint is None or checkpoint == "last":
        path = checkpoint_dir(run_dir) / "last.pt"
        if not path.is_file():
            raise CheckpointError(
                f"{run_dir} has no checkpoint (checkpoints/last.pt is missing); "
                "is it a kml run directory whose training saved at least one checkpoint?"
            )
        return path
    if isinstance(checkpoint, int) or str(checkpoint).isdigit():
        iteration = int(checkpoint)
        path = checkpoint_path(run_dir, iteration)
        if not path.is_file():
            available = ", ".join(str(i) for i in list_checkpoints(run_dir)) or "none"
            raise CheckpointError(
                f"{run_dir} has no checkpoint at iteration {iteration}; available iterations: {available}"
            )
        return path
    path = Path(checkpoint)
    if not path.is_absolute() and not path.exists():
        path = run_dir / path
    return path


def check_state_dict(
    module: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    what: str,
    methods: tuple[str, str] | None = None,
) -> None:
    """Raise :class:`CheckpointError` naming the differing keys/shapes if ``state_dict``
    does not fit ``module`` exactly (different architecture or method).

    ``methods``: ``(checkpoint's method, this run's method)``, named in the message when
    they differ."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {_short(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_short(unexpected)}")
    if shapes:
        parts.append(
            "shape mismatch "
            + _short([f"{k}: checkpoint {found[k]} vs model {expected[k]}" for k in shapes])
        )
    origin = ""
    if methods and methods[0] and methods[0] != methods[1]:
        origin = f"it was saved by {methods[0]} but this run is {methods[1]}; "
    raise CheckpointError(
        f"{what} does not match this model ({origin}{'; '.join(parts)}); "
        "it belongs to a different architecture or method: use a checkpoint of this run, or this run's own config"
    )


def _short(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass
class LoadedRun:
    """A trained run restored from its directory or from one checkpoint file.

    Unpacks as ``learner, config = kml.load_run(path)``.
    """

    learner: torch.nn.Module
    config: DictConfig
    iteration: int
    method: str
    mode_names: list[str]
    checkpoint: Path
    state: dict[str, Any]
    specialist: str | None = None  # the Multi-* specialist loaded (its mode)

    def __iter__(self):
        return iter((self.learner, self.config))


def read_run_config(run_dir: str | Path) -> DictConfig:
    """The resolved config saved in ``<run_dir>/config.yaml``."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} is not a kml run directory (config.yaml is missing); "
            f"pass the output folder of {command('train')}"
        )
    from kml.engine.rundir import load_config_file

    return load_config_file(path)


def checkpoint_config(state: dict[str, Any], path: str | Path) -> DictConfig:
    """The resolved run config a checkpoint embeds (every checkpoint carries its run's
    config, a Multi-* specialist's its own), checked against the schema."""
    from omegaconf import OmegaConf

    from kml.config.run import saved_run_config

    text = state.get("config")
    if not isinstance(text, str) or not text.strip():
        raise CheckpointError(f"{path} embeds no run config; load it from its run directory instead")
    try:
        return saved_run_config(OmegaConf.create(text))
    except Exception as err:  # omegaconf raises several error types
        raise CheckpointError(
            f"the config embedded in {path} is not a valid kml run config ({_first_line(err)})"
        ) from None


def load_run(
    path: str | Path,
    checkpoint: int | str | None = None,
    device: str | torch.device = "cpu",
    mode: str | None = None,
) -> LoadedRun:
    """Rebuild a trained learner and load its weights, in evaluation mode.

    ``path`` is a run directory (the output folder of ``scripts/train.py``; its
    ``config.yaml`` describes the learner) or a single checkpoint file (``.pt``, e.g. a
    copied ``last.pt``: the config it embeds describes the learner, no ``config.yaml``
    needed):

        learner, config = kml.load_run("outputs/2026-01-01/10-00-00_synthetic_protonet-kml_1a2b3c")
        logits = learner.predict(support, support_labels, query)   # (T, N*Q, N)

    Image files of your own become ``support`` and ``query`` through
    :func:`kml.data.load_images`, given the run's image size and the dataset whose
    preprocessing the images need (``dataset="omniglot"`` inverts the official scans; see
    its module for an example).

    Args:
        path: a run directory or a checkpoint file.
        checkpoint: for a run directory, ``None``/``"last"``, ``"best"``, an iteration
            number, or a path; must be ``None`` for a checkpoint file.
        device: where to put the learner. Default: the CPU.
        mode: for a Multi-* run directory, which specialist (default: the first); the
            learner is built with that specialist's own settings (e.g. its inner steps
            and lr).

    Raises:
        CheckpointError: no such run or file, no checkpoint, an unsafe or corrupt file,
            or weights that do not fit the config.
    """
    path = Path(path)
    if path.is_file():
        if checkpoint not in (None, "last"):
            raise CheckpointError(
                f"{path} is a checkpoint file: drop checkpoint={checkpoint} (or pass its run directory)"
            )
        return _load_file(path, device)
    if not path.is_dir():
        raise CheckpointError(f"{path} does not exist; pass a run directory or a checkpoint file (.pt)")
    config = read_run_config(path)
    chosen = _specialist(path, mode) if config.multi else None
    path = resolve_checkpoint(path / "specialists" / chosen if chosen else path, checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    return _loaded(path, state, config, chosen, device)


def _specialist(run_dir: Path, mode: str | None) -> str:
    """The specialist of a Multi-* run to load: ``mode``'s, or the first.

    Raises:
        CheckpointError: the run has no specialists yet, or none for ``mode``.
    """
    folder = run_dir / "specialists"
    specialists = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not specialists:
        raise CheckpointError(f"{run_dir} is a Multi-* run without specialists/; it saved no checkpoint yet")
    chosen = mode or specialists[0]
    if chosen not in specialists:
        raise CheckpointError(f"{run_dir} has no specialist for mode {chosen!r}; it has: {', '.join(specialists)}")
    return chosen


def _load_file(path: Path, device: str | torch.device) -> LoadedRun:
    """:func:`load_run` of one checkpoint file, built from the config it embeds."""
    state = load_checkpoint(path, map_location="cpu")
    config = checkpoint_config(state, path)
    # a specialist's checkpoint embeds the specialist's own config (its inner steps and lr)
    return _loaded(path, state, config, str(state.get("mode") or "") or None, device, specialist_config=False)


def _loaded(path: Path, state: dict, config, specialist: str | None, device: str | torch.device,
            specialist_config: bool = True) -> LoadedRun:
    """The learner of ``config`` with the weights of checkpoint ``state`` (read from
    ``path``), in eval mode on ``device``. ``specialist_config``: build the specialist's
    config from the run's (a run directory) rather than use ``config`` as it is (a
    specialist's own checkpoint)."""
    from kml.engine.from_config import build_learner_from_config
    from kml.learners import method_name, upgrade_state_dict

    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path} holds no model; pass a file from a run's checkpoints/ folder")
    learner = build_learner_from_config(config, dataset=specialist if specialist_config else None)
    method = method_name(config.learner.name, config.modulation.name, bool(config.multi))
    state["model"] = upgrade_state_dict(state["model"], learner)
    check_state_dict(learner, state["model"], f"checkpoint {path}", methods=(str(state.get("method", "")), method))
    learner.load_state_dict(state["model"])
    learner.to(device).eval()
    return LoadedRun(
        learner=learner,
        config=config,
        iteration=int(state["iteration"]),
        method=method,
        mode_names=list(state.get("mode_names", [])),
        checkpoint=path,
        state=state,
        specialist=specialist,
    )
