"""The settings every modulated layer of a backbone is built with, in one object.

A :class:`ModulationSpec` carries the ``modulation.*`` settings of a run from the config
through :func:`kml.learners.build_learner` and the backbone to each modulated layer
(``from_spec`` of the registered layer class, :mod:`kml.modulation`). Its field defaults
are the library's defaults of these settings: the run-config schema reads them from
here. Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from kml.options import option, options_from

__all__ = ["ModulationSpec", "FACTORIZATIONS", "INITS", "check_kernel_generator_options", "check_init"]

#: KML's generator factorisations (:class:`~kml.modulation.KernelGenerator`)
FACTORIZATIONS = ("channel", "published", "full")
#: how the generators and the task encoder start (``modulation.init``): ``default`` (kml's:
#: the identity modulation, a Xavier-uniform task encoder) or ``published`` (the published KML
#: code's: PyTorch's default init of the mask heads and of the task encoder)
INITS = ("default", "published")


def check_kernel_generator_options(rank: int, factorization: str) -> None:
    """The checks of KML's generator options, run by :class:`ModulationSpec` when it is made
    (so for the run config's ``modulation.rank`` and ``modulation.factorization``, and for
    :class:`~kml.modulation.KernelGenerator`, which takes a spec).

    Raises:
        ValueError: one line naming the option, its value and the allowed values.
    """
    if factorization not in FACTORIZATIONS:
        raise ValueError(f"factorization={factorization!r} is not valid; use one of: {', '.join(FACTORIZATIONS)}")
    if rank < 1:
        raise ValueError(f"rank={rank} is out of range: it must be >= 1")


def check_init(init: str, identity: bool) -> None:
    """The check of ``init`` (:data:`INITS`), run by :class:`ModulationSpec` when it is made
    (:class:`~kml.modulation.KernelGenerator` takes a spec): the published initialisation starts the mask
    ``M`` small and random, which only the published ``W * M`` (``identity=False``) uses.

    Raises:
        ValueError: one line naming the option, its value and the fix.
    """
    if init not in INITS:
        raise ValueError(f"init={init!r} is not valid; use one of: {', '.join(INITS)}")
    if init == "published" and identity:
        raise ValueError(
            "init='published' is the published code's start of W * M and needs identity=false; set "
            "modulation.identity=false (or use protocol=published), or keep init=default with W * (1 + M)"
        )


@dataclass(frozen=True)
class ModulationSpec:
    """What a backbone's modulated layers and the task encoder are built with: the
    declaration of the ``modulation.*`` settings (each field's type, default and doc),
    which the run config's ``modulation`` section, its validation, ``--help`` and
    :func:`kml.learners.build_learner` read.

    Built-in modulations ignore the settings they do not use (FiLM reads ``task_dim``
    and ``hidden`` only), but every spec is checked when it is made. A registered
    modulation's own settings are ``options`` (``modulation.options.*``), checked by its
    layer class (``check_spec``; a class may declare them as an ``Options`` dataclass).

    Raises:
        ValueError: ``task_dim < 1``, ``rank < 1``, an unknown ``factorization`` or ``init``,
            or ``init="published"`` with ``identity=True`` (one line naming the field; the run
            config prefixes ``modulation.``).
    """

    name: str = option("none", "none | film | kml | a registered modulation")
    task_dim: int = option(128, "size of the task embedding v the generators read")
    encoder_channels: Optional[tuple[int, ...]] = option(
        None, "widths of the task encoder (a strided Conv-4); null: a Conv-4 backbone's channels, else 32-64-128-256")
    hidden: tuple[int, ...] = option((), "hidden layer sizes of each generator MLP; []: one linear layer")
    rank: int = option(1, "KML: the number r of outer products summed in M(v)")
    factorization: str = option("channel", "KML's factors: channel (C_out x C_in*k*k) | published (the published "
                                           "code's sizes) | full (every kernel element)")
    identity: bool = option(True, "KML: W * (1 + M) (the paper); false: W * M (the published code)")
    init: str = option("default", "default (kml's: the identity modulation, a Xavier-uniform task encoder) | "
                                  "published (PyTorch's default init of the mask heads and the encoder; "
                                  "needs identity=false)")
    options: Mapping[str, Any] = option({}, "a registered modulation's own settings, checked by its layer class")

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.encoder_channels is not None:
            object.__setattr__(self, "encoder_channels", tuple(int(c) for c in self.encoder_channels))
        object.__setattr__(self, "options", dict(self.options or {}))
        if self.task_dim < 1:
            raise ValueError(f"task_dim={self.task_dim} is out of range: it must be >= 1")
        check_kernel_generator_options(self.rank, self.factorization)
        check_init(self.init, self.identity)

    @classmethod
    def from_config(cls, modulation: Any) -> "ModulationSpec":
        """The spec of a run config's ``modulation`` section (a ``DictConfig`` or a mapping);
        a setting it lacks (a record older than the setting) takes its default.

        Raises:
            kml.options.OptionError: an unknown setting or a value of the wrong type, in one
                line naming ``modulation.<setting>``.
        """
        if not isinstance(modulation, Mapping):
            from omegaconf import OmegaConf

            modulation = OmegaConf.to_container(modulation, resolve=True)
        return options_from(cls, modulation, "modulation", "modulation")
