"""The name of each command as the user can type it, for messages that tell them what to run.

The seven commands exist in two forms: console scripts installed with the package
(``kml-train``, ``kml-eval``, ...) and thin wrappers in a source checkout
(``python scripts/train.py``, ...). A wheel has only the first; a checkout without
``pip install`` only the second. :func:`command` picks the form from how this process
was started (``sys.argv[0]``), so that a message such as "continue with:
kml-train resume=<run>" names a command that exists where it is read.

    >>> command("train", argv0="/home/me/.venv/bin/kml-train")
    'kml-train'
    >>> command("prepare", argv0="scripts/prepare_data.py")
    'python scripts/prepare_data.py'
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["COMMANDS", "command", "command_of_config"]

#: every command: ``{name: (console script, script of the checkout, its config in configs/)}``
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("kml-train", "scripts/train.py", "config"),
    "eval": ("kml-eval", "scripts/eval.py", "eval"),
    "compare": ("kml-compare", "scripts/compare.py", "compare"),
    "transference": ("kml-transference", "scripts/transference.py", "transference"),
    "prepare": ("kml-prepare", "scripts/prepare_data.py", "prepare_data"),
    "bench": ("kml-bench", "scripts/bench.py", "bench"),
    "reproduce": ("kml-reproduce", "scripts/reproduce.py", "reproduce"),
}


def _checkout_scripts() -> bool:
    """Whether the ``kml`` package was imported from a source checkout that has ``scripts/``."""
    return (Path(__file__).resolve().parent.parent / COMMANDS["train"][1]).is_file()


def command(name: str, argv0: str | None = None) -> str:
    """The command ``name`` (a key of :data:`COMMANDS`) in the form this process was
    started with.

    A console script (``argv0`` named ``kml-*``) gives ``kml-<name>``; a script of the
    checkout (``scripts/<file>.py``) gives ``python scripts/<file>.py``. Any other start
    (your own Python code, a notebook, a launcher) gives the form the installation has:
    the checkout's script when ``kml`` runs from a checkout, else the console script.

    Args:
        name: ``train``, ``eval``, ``compare``, ``transference``, ``prepare``, ``bench``
            or ``reproduce``.
        argv0: the program as started. Default: ``sys.argv[0]``.

    Raises:
        KeyError: ``name`` is not one of the commands.
    """
    console, script, _ = COMMANDS[name]
    program = Path(sys.argv[0] if argv0 is None and sys.argv else (argv0 or ""))
    if program.name.startswith("kml-"):
        return console
    if program.suffix == ".py" and program.parent.name == "scripts" and program.name in {
        Path(s).name for _, s, _ in COMMANDS.values()
    }:
        return f"python {script}"
    return f"python {script}" if _checkout_scripts() else console


def command_of_config(config_name: str, argv0: str | None = None) -> str:
    """:func:`command` of the command whose config is ``configs/<config_name>.yaml``
    (``config`` is ``train``'s); the config name itself if no command has it."""
    for name, (_, _, config) in COMMANDS.items():
        if config == config_name:
            return command(name, argv0)
    return config_name
