"""Composition of the Hydra configs: where they are, the resolvers they use, the run
config of a list of overrides, and one-line messages for Hydra's errors.

The configs live in ``configs/`` beside the ``kml`` package in a source checkout (and an
editable install); a built wheel ships the same files as ``kml/configs``. Everything here
is importable without torch; Hydra is imported on first use.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def config_dir() -> str:
    """The folder of the Hydra configs: ``kml/configs`` inside an installed wheel, else
    ``configs/`` at the top of the checkout the ``kml`` package was imported from."""
    package = Path(__file__).resolve().parent.parent
    candidates = (package / "configs", package.parent / "configs")
    for folder in candidates:
        if (folder / "config.yaml").is_file():
            return str(folder)
    return str(candidates[0])


#: the folder of the shipped Hydra configs
CONFIG_DIR = config_dir()


def register_resolvers() -> None:
    """The OmegaConf resolvers used by ``configs/config.yaml`` (idempotent)."""
    from omegaconf import OmegaConf

    resolvers = {
        # resume=<dir> makes Hydra's run directory the resumed run's own directory (resume=auto
        # keeps hydra.run.dir: the run continues wherever the command says)
        "kml_run_dir": (lambda resume, default: resume if resume and resume != "auto" else default, False),
        "kml_hydra_subdir": (_hydra_subdir, False),
        # a per-process random suffix (cached: the same value wherever it is used)
        "kml_unique": (lambda: secrets.token_hex(3), True),
        # a backbone's own default of a setting (learner.backbone.channels and .style)
        "kml_backbone_default": (_backbone_default, False),
        # --help (configs/hydra/help/kml.yaml): the command as the user runs it, and its groups
        "kml_command": (_command_of_config, False),
        "kml_config_groups": (help_groups, False),
    }
    for name, (resolver, use_cache) in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=use_cache)


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


def _command_of_config(config_name: str) -> str:
    from kml.commands import command_of_config

    return command_of_config(config_name)


def _backbone_default(backbone: str, setting: str):
    """``default_channels`` (as a list) or ``default_style`` of the registered backbone."""
    from kml.backbone import get_backbone

    cls = get_backbone(backbone)
    if setting == "channels":
        return list(cls.default_channels)
    if setting == "style":
        return cls.default_style
    raise KmlError(f"kml_backbone_default: {setting!r} is not a backbone default; use channels or style")


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

    try:
        with hydra_initialized():
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    except Exception as err:
        message = describe_hydra_error(err, RunConfig)
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


def describe_hydra_error(err: BaseException, schema: type | None = None) -> str | None:
    """One line for an error raised by Hydra while composing the config or creating the
    output directory (before the run starts); ``None`` if it is not one of those."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    from kml.config.checks import unknown_key_message

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
                options = group_options(group)
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
            options = group_options(group)
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


def group_options(group: str) -> list[str]:
    """The options of a config group: its yaml files (those in sub-folders as
    ``<folder>/<name>``, e.g. ``paper/5mode_maml``) and the ones registered in code."""
    from hydra.core.config_store import ConfigStore

    folder = Path(CONFIG_DIR) / group
    options = {p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")}
    try:
        options |= {Path(name).stem for name in ConfigStore.instance().list(group)}
    except OSError:  # no such group in the store
        pass
    return sorted(options)


def config_groups(config_name: str) -> list[str]:
    """The config groups a command accepts: those that the defaults list of its config
    (``configs/<config_name>.yaml``) selects, Hydra's own (``hydra/...``) left out."""
    from omegaconf import OmegaConf

    path = Path(CONFIG_DIR) / f"{config_name}.yaml"
    if not path.is_file():
        return []
    groups = []
    for entry in OmegaConf.load(path).get("defaults", []):
        if isinstance(entry, str):  # the schema, _self_
            continue
        for key in entry:
            words = str(key).split()  # "learner", "optional experiment", "override hydra/help"
            if words[0] != "override" and not words[-1].lstrip("/").startswith("hydra"):
                groups.append(words[-1].lstrip("/"))
    return groups


def help_groups(config_name: str) -> str:
    """The ``--help`` section of a command's config groups: one ``group: options`` line each."""
    lines = [f"{group}: {', '.join(group_options(group))}" for group in config_groups(config_name)]
    return "\n".join(lines) if lines else "(none: this command takes config keys only)"
