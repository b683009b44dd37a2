"""Where the Hydra configs are, the OmegaConf resolvers they use, and the listing of a
config group's options (for messages and ``--help``). Importable without torch; the lowest
module of :mod:`kml.config` that knows about Hydra's files.

The configs live in ``configs/`` beside the ``kml`` package in a source checkout (and an
editable install); a built wheel ships the same files as ``kml/configs``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from kml.errors import KmlError

__all__ = ["CONFIG_DIR", "config_dir", "register_resolvers", "group_options", "config_groups", "help_groups",
           "help_options"]


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
        "kml_declared_options": (help_options, False),
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
    import kml.catalogue  # noqa: F401  (the built-in backbones register)
    from kml.backbone import get_backbone

    cls = get_backbone(backbone)
    if setting == "channels":
        return list(cls.default_channels)
    if setting == "style":
        return cls.default_style
    raise KmlError(f"kml_backbone_default: {setting!r} is not a backbone default; use channels or style")


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


def help_options(config_name: str) -> str:
    """The ``--help`` section of the run config's declared settings: each registered
    learner's own options, the backbone's and the modulation's, one ``key: type = default
    # doc`` line each, read from their declarations (""for the other commands)."""
    if config_name != "config":
        return ""
    import dataclasses

    import kml.catalogue  # noqa: F401  (the built-in learners register)
    from kml.backbone_spec import BackboneSpec
    from kml.modulation_spec import ModulationSpec
    from kml.options import option_lines
    from kml.registry import LEARNERS

    lines = ["== Declared options (their defaults; learner=<name> selects a learner's) =="]
    for name in LEARNERS.names():
        options = LEARNERS.get(name).Options
        lines += [f"learner={name}:"] + (option_lines(options, "  learner.") if dataclasses.fields(options)
                                         else ["  (no options of its own)"])
    lines += ["every learner:"] + option_lines(BackboneSpec, "  learner.backbone.")
    lines += ["every modulation:"] + option_lines(ModulationSpec, "  modulation.")
    return "\n".join(lines)
