"""The ``imports`` key of a run config: the user's modules to import before the config is
validated or a learner is built from it, so that the modulations, learners and backbones
they register are known (``docs/extending.md``)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable, Sequence

from kml.config.checks import ConfigError

__all__ = ["import_user_modules", "imports_in"]


def import_user_modules(names: Iterable[str] | None) -> None:
    """Import each module of ``names`` (dotted module names), looked up on ``sys.path`` and
    in the current folder. Importing a module twice does nothing.

    Raises:
        ConfigError: a module cannot be found or fails to import (one line naming it and
            the fix).
    """
    for name in list(names or []):
        name = str(name)
        if name in sys.modules:
            continue
        if not name or name.endswith(".py") or "/" in name or os.sep in name:
            raise ConfigError(
                f"imports: {name!r} is not a module name; list modules by name (imports=[my_module] for my_module.py "
                "in the current folder or on PYTHONPATH)"
            )
        here = os.getcwd()
        added = here not in sys.path
        if added:
            sys.path.insert(0, here)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.split(".")[0] != err.name.split(".")[0]:
                raise  # the module was found, one of its own imports is missing: a bug to show in full
            raise ConfigError(
                f"imports: no module named {name!r}; put {name.split('.')[0]}.py in the current folder ({here}) "
                "or add its folder to PYTHONPATH"
            ) from None
        finally:
            if added and here in sys.path:
                sys.path.remove(here)


def imports_in(overrides: Sequence[str]) -> list[str]:
    """The modules that an ``imports=[a,b]`` override names (the last such override).

    The commands import them before composing the config, so that a learner they register
    is a ``learner=<name>`` option with its own keys, set from the command line like a
    built-in's (``imports=[my_learner] learner=my_learner learner.scale=5``).
    """
    names: list[str] = []
    for override in overrides:
        key, _, value = str(override).lstrip("+").partition("=")
        if key == "imports":
            names = [part.strip().strip("'\"") for part in value.strip().strip("[]").split(",") if part.strip()]
    return names
