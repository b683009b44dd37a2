"""The ``learner`` section of a run config, read from what each registered learner declares.

A learner's settings are its class's ``Options`` (:class:`kml.learners.LearnerOptions`);
its recipe (:mod:`kml.recipes`) gives the backbone's settings and the training budget.
From these two, and nothing else:

- :func:`learner_group_node` is the ``learner=<name>`` config group option (registered in
  Hydra's ConfigStore for every registered learner), so ``learner.<option>=...`` works on
  the command line for a learner of your own as for the built-ins;
- :func:`learner_options` reads a config's option values for
  :func:`kml.learners.build_learner`;
- :func:`check_learner` validates the section, in one-line errors.

The registries are read when these are called (importing :mod:`kml.catalogue`, which
imports torch); importing this module does not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from kml.config.checks import ConfigError
from kml.errors import KmlError
from kml.recipes import DEFAULT_LEARNER

__all__ = ["SECTIONS", "LearnerConfig", "SpecialistConfig", "learner_group_node", "learner_options", "check_learner",
           "backbone_default", "learner_in", "learner_key_message", "upgrade_saved_learner"]

#: the keys of ``learner`` that are not the learner's own options
SECTIONS = ("name", "backbone", "specialist")


@dataclass
class SpecialistConfig:
    """Overrides for Multi-* specialists (one learner per mode, ``multi=true``)."""

    iterations: Optional[int] = None
    meta_batch_size: Optional[int] = None
    inner_lr: Optional[float] = None
    inner_steps: Optional[int] = None
    # per-dataset overrides of iterations / meta_batch_size / inner_lr / inner_steps, e.g.
    # {omniglot: {inner_lr: 0.4, inner_steps: 1, meta_batch_size: 10, iterations: 60000}}
    per_dataset: dict[str, Any] = field(default_factory=dict)


@dataclass
class LearnerConfig:
    """The ``learner`` section's fixed keys. Its other keys are the selected learner's own
    options, declared by its class (``Options``: MAML's ``inner_steps``, ..., ProtoNet's
    ``query_modulation``, ...); ``learner=<name>`` sets every key to that learner's defaults
    and recipe (:mod:`kml.config.learner`), and :func:`validate` checks them."""

    name: str = DEFAULT_LEARNER  # maml | protonet | a registered learner
    # learner.backbone.*: kml.backbone_spec.BackboneSpec (name, style, channels, bn_affine, bias, pool)
    backbone: dict[str, Any] = field(default_factory=dict)
    specialist: SpecialistConfig = field(default_factory=SpecialistConfig)


def backbone_default(setting: str, value: Any = None) -> Any:
    """``value`` (a recipe's own), or for ``None`` the interpolation that resolves to the
    selected backbone's own default of ``setting`` (``channels`` or ``style``; resolver
    ``kml_backbone_default``, :mod:`kml.config.resolvers`)."""
    if value is None:
        return "${kml_backbone_default:${.name}," + setting + "}"
    return list(value) if isinstance(value, (tuple, list)) else value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _learner_class(name: str):
    import kml.catalogue  # noqa: F401  (the built-in learners register)
    from kml.registry import get_learner

    return get_learner(name)


def _learners_with_option(option_name: str) -> list[str]:
    """The registered learners that declare ``option_name`` (in registry order)."""
    import kml.catalogue  # noqa: F401  (the built-in learners register)
    from kml.registry import list_learners

    return [name for name in list_learners()
            if option_name in {f.name for f in dataclasses.fields(_learner_class(name).Options)}]


def learner_group_node(name: str) -> dict:
    """The ``learner=<name>`` config group option: the learner's declared options at their
    defaults, its recipe's backbone and specialist settings (``learner.*``) and its recipe's
    training budget (``train.*``)."""
    cls = _learner_class(name)
    r = cls.recipe
    options = {f.name: _plain(getattr(cls.Options(), f.name)) for f in dataclasses.fields(cls.Options)}
    specialist = {"iterations": None, "meta_batch_size": None, "inner_lr": None, "inner_steps": None,
                  "per_dataset": {}, **_plain(r.specialist)}
    backbone = {"name": r.backbone, "style": backbone_default("style", r.style),
                "channels": backbone_default("channels", r.channels), "bn_affine": r.bn_affine, "pool": r.pool,
                "bias": r.bias}
    return {
        "learner": {"name": name, "backbone": backbone, **options, "specialist": specialist},
        "train": {"iterations": r.iterations, "meta_batch_size": r.meta_batch_size, "lr": r.lr,
                  "scheduler": {"step_size": r.scheduler_step_size, "gamma": r.scheduler_gamma}},
    }


def _former_defaults(cls) -> dict[str, Any]:
    """The options of the other registered learners that ``cls`` does not have, at their
    defaults: records of kml 0.1 held every built-in learner's options in one section."""
    from kml.registry import LEARNERS

    own = {f.name for f in dataclasses.fields(cls.Options)}
    former: dict[str, Any] = {}
    for other in LEARNERS.names():
        for f in dataclasses.fields(LEARNERS.get(other).Options):
            if f.name not in own:
                former.setdefault(f.name, getattr(LEARNERS.get(other).Options(), f.name))
    return former


def learner_options(section: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The learner's own option values of a config's ``learner`` section (every key but
    :data:`SECTIONS`), without the other learners' options at their defaults that a
    record of kml 0.1 holds."""
    values = section if isinstance(section, Mapping) else OmegaConf.to_container(section, resolve=True)
    cls = _learner_class(str(values["name"]))
    former = _former_defaults(cls)
    return {key: value for key, value in values.items()
            if key not in SECTIONS and not (key in former and value == former[key])}


def check_learner(c: DictConfig) -> None:
    """Check the ``learner`` section: its options (by their declaration), its backbone's
    settings and its specialist overrides.

    Raises:
        ConfigError: an unknown key (listing the learner's keys), a value of the wrong type
            or out of range, in one line naming ``learner.<key>``.
    """
    from kml.backbone_spec import BackboneSpec
    from kml.options import OptionError, options_from

    cls = _learner_class(str(c.learner.name))
    try:
        options_from(cls.Options, learner_options(c.learner), "learner", f"learner {c.learner.name}")
        BackboneSpec.from_config(c.learner.backbone)
        specialist = OmegaConf.to_container(c.learner.specialist, resolve=True)
        per_dataset = specialist.pop("per_dataset", None) or {}
        options_from(SpecialistConfig, {**specialist, "per_dataset": per_dataset}, "learner.specialist")
    except OptionError as err:
        raise ConfigError(_with_sections(str(err), cls)) from None


def _with_sections(message: str, cls) -> str:
    """An unknown learner option's message lists the section keys too."""
    if " is not an option of learner " in message:
        return message.replace("; its options: ", f"; its keys: {', '.join(SECTIONS)}, ", 1)
    return message


#: the learner options every kml 0.1 record wrote, whichever learner it ran (MAML's and
#: ProtoNet's together; a learner ignored the other's)
_KML01_LEARNER_KEYS = ("inner_steps", "inner_lr", "first_order", "grad_clip", "eval_inner_steps",
                       "query_modulation", "prototype_refinement", "batch_norm")


def upgrade_saved_learner(learner: DictConfig | None) -> None:
    """Bring the ``learner`` section of a run recorded by kml 0.1 to today's form, in place:
    the backbone gets its name (``conv4``, the only backbone of those records), and the
    other learner's options, which 0.1 wrote into every record and the learner never read,
    are dropped. A record of today's form is left as it is."""
    if learner is None:
        return
    backbone = learner.get("backbone")
    if backbone is not None and "name" not in backbone:
        backbone.name = "conv4"
    try:
        own = {f.name for f in dataclasses.fields(_learner_class(str(learner.get("name", DEFAULT_LEARNER))).Options)}
    except KmlError:  # a learner of the user's own, not imported yet: its keys are its own
        return
    for key in [k for k in learner.keys() if k in _KML01_LEARNER_KEYS and k not in own]:
        learner.pop(key)


def learner_in(overrides: Sequence[str]) -> str:
    """The learner a list of overrides selects: ``learner=<name>`` or ``learner.name=<name>``
    (the last one), else the learner of ``experiment=<name>`` (its ``override /learner``),
    else the default run's."""
    name = experiment = None
    for override in overrides:
        key, _, value = str(override).lstrip("+~").partition("=")
        if key in ("learner", "learner.name") and value:
            name = value
        elif key == "experiment" and value:
            experiment = value
    return name or (_experiment_learner(experiment) if experiment else None) or DEFAULT_LEARNER


def _experiment_learner(experiment: str) -> str | None:
    """The learner an experiment file selects (``- override /learner: <name>``), if any."""
    from pathlib import Path

    from kml.config.resolvers import CONFIG_DIR

    path = Path(CONFIG_DIR) / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        return None
    for entry in OmegaConf.load(path).get("defaults", []) or []:
        if isinstance(entry, DictConfig):
            for group, value in entry.items():
                if str(group).replace("override", "").strip() == "/learner":
                    return str(value)
    return None


def learner_key_message(key: str, learner: str) -> str:
    """One line naming an unknown ``learner.*`` key, the closest valid key and the valid keys
    at that level: the learner's own (its declared options, :data:`SECTIONS`), its
    backbone's (:class:`~kml.backbone_spec.BackboneSpec`) or its specialist overrides'."""
    import difflib

    from kml.backbone_spec import BackboneSpec

    parts = key.split(".")
    if len(parts) > 2 and parts[1] in ("backbone", "specialist"):
        where, names = f"learner.{parts[1]}", [f.name for f in dataclasses.fields(
            BackboneSpec if parts[1] == "backbone" else SpecialistConfig)]
        part = parts[2]
    else:
        try:
            options = [f.name for f in dataclasses.fields(_learner_class(learner).Options)]
        except KmlError:  # an unregistered learner: its own keys are not known
            options = []
        where, names, part = f"learner ({learner})", [*SECTIONS, *options], parts[1]
        owners = _learners_with_option(part)
        if owners and learner not in owners:
            whose = f"learner {owners[0]}" if len(owners) == 1 else f"learners {', '.join(owners)}"
            return f"{key} is an option of {whose}, not of {learner}; use learner={owners[0]} or drop the override"
    close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
    hint = f" (did you mean {where.split(' ')[0]}.{close[0]}?)" if close else ""
    return f"unknown config key {key!r}{hint}; valid keys of {where}: {', '.join(names)}"
