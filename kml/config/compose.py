"""Composition of the Hydra configs: the run config of a list of overrides, Hydra's
global state for it, and one-line messages for Hydra's errors.

Where the configs are and the resolvers they use is :mod:`kml.config.resolvers` (the
names stay importable from here). Everything here is importable without torch; Hydra is
imported on first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from kml.config.imports import import_user_modules, imports_in
from kml.config.resolvers import CONFIG_DIR, config_dir, config_groups, group_options, help_groups, register_resolvers
from kml.errors import KmlError, MissingExtraError

__all__ = [
    "CONFIG_DIR",
    "config_dir",
    "register_resolvers",
    "hydra_initialized",
    "compose_run_config",
    "describe_hydra_error",
    "group_options",
    "config_groups",
    "help_groups",
]


@contextmanager
def hydra_initialized() -> Iterator[None]:
    """Hydra's global state, ready to compose the configs of ``configs/``: the running
    app's (inside an entry point), else initialised for the duration of the block.
    Inside it, ``GlobalHydra.instance().config_loader()`` is the loader that composed them."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from kml.config.store import register_configs

    register_resolvers()
    register_configs()
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        yield


def compose_run_config(overrides: list[str], return_hydra_config: bool = False):
    """The run config that ``kml-train <overrides>`` composes (inside a running Hydra app,
    or standalone); with ``return_hydra_config``, Hydra's own settings too (``hydra.*``,
    as a launcher reads them).

    Raises:
        KmlError: an override names an unknown key or option, or cannot be parsed.
    """
    from hydra import compose

    from kml.config.run import RunConfig

    import_user_modules(imports_in(overrides))  # a learner they register is a learner= option with its keys
    try:
        with hydra_initialized():
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    except Exception as err:
        message = describe_hydra_error(err, RunConfig, overrides)
        if message is None:
            raise
        raise KmlError(message) from None


def _lines(err: BaseException) -> list[str]:
    return [line.strip() for line in str(err).strip().splitlines() if line.strip()]


#: ``(config group, option)`` of the Hydra plugins the extras install: (plugin, extra)
_PLUGIN_EXTRAS = {
    ("hydra/launcher", "submitit_slurm"): ("submitit launcher", "slurm"),
    ("hydra/launcher", "submitit_local"): ("submitit launcher", "slurm"),
    ("hydra/sweeper", "optuna"): ("Optuna sweeper", "optuna"),
}


def describe_hydra_error(err: BaseException, schema: type | None = None, overrides: Sequence[str] = ()) -> str | None:
    """One line for an error raised by Hydra while composing the config or creating the
    output directory (before the run starts); ``None`` if it is not one of those.
    ``overrides`` (the command line's) say which learner's keys an unknown ``learner.*``
    key is measured against."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    lines = _lines(err)
    first = lines[0] if lines else type(err).__name__
    if isinstance(err, MissingConfigException):
        return _missing_config(err, first)
    if isinstance(err, OverrideParseException):
        detail = "; ".join(line for line in lines[1:] if not line.startswith("See "))
        return (
            f"cannot parse the override {first.split(' ', 3)[-1]}: {detail or 'invalid syntax'}; "
            "write overrides as key=value (e.g. train.iterations=100)"
        )
    if isinstance(err, HydraException):
        return _hydra_exception(err, first, lines, schema, overrides)
    if isinstance(err, OmegaConfBaseException):
        key = getattr(err, "full_key", None)
        return f"invalid config{f' at {key}' if key else ''}: {first}"
    if isinstance(err, OSError) and err.filename:  # Hydra creating the run directory or its files
        return (
            f"cannot create the run directory {err.filename} ({err.strerror or first}); "
            "choose a writable place with hydra.run.dir=/path/to/run (or run from a writable folder)"
        )
    return None


def _missing_config(err, first: str) -> str:
    """A config group option that does not exist, or a plugin of an extra that is not installed."""
    found = re.search(r"Could not (?:find|load) '([^']*)/([^']*)'", first)
    if not found:
        return f"{first}; check the config name and group options (configs/)"
    group, option = found.groups()
    extra = _PLUGIN_EXTRAS.get((group, option))
    if extra is not None:  # a Hydra plugin of an optional extra, not installed
        plugin, name = extra
        return str(MissingExtraError(f"{group}={option}", f"Hydra's {plugin} plugin", name))
    options = list(err.options or []) or group_options(group)  # Hydra lists options only for some failures
    valid = f"; valid options for {group}: {', '.join(options)}" if options else ""
    return f"{group}={option} is not a known option{valid}"


def _hydra_exception(err, first: str, lines: list[str], schema: type | None, overrides: Sequence[str]) -> str:
    """A required group, an unknown key, or a value of the wrong type."""
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    from kml.config.checks import unknown_key_message

    cause = err.__cause__
    required = re.search(r"You must specify '([^']*)'", first)
    if required:
        group = required.group(1)
        options = group_options(group)
        return f"{group} is required: pass {group}=<name>" + (f"; available: {', '.join(options)}" if options else "")
    override = re.search(r"Could not override '([^']*)'", first)
    if override or isinstance(cause, ConfigKeyError):
        key = override.group(1) if override else getattr(cause, "full_key", "") or first
        if key.startswith("learner.") and getattr(schema, "__name__", "") == "RunConfig":
            from kml.config.learner import learner_in, learner_key_message

            return learner_key_message(key, learner_in(overrides))
        return unknown_key_message(key, schema) if schema is not None else f"unknown config key {key!r}"
    merging = re.search(r"Error merging override (.*)", first)
    if merging and isinstance(cause, OmegaConfBaseException):
        detail = _lines(cause)[0] if _lines(cause) else type(cause).__name__
        return f"invalid value in {merging.group(1)}: {detail}; pass a value of the key's type"
    detail = "; ".join(lines)
    if isinstance(cause, OmegaConfBaseException) and _lines(cause):
        detail += f" ({_lines(cause)[0]})"
    return detail


