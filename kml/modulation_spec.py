"""The settings every modulated layer of a backbone is built with, in one object.

A :class:`ModulationSpec` carries the ``modulation.*`` settings of a run from the config
through :func:`kml.learners.build_learner` and the backbone to each modulated layer
(``from_spec`` of the registered layer class, :mod:`kml.modulation`). Its field defaults
are the library's defaults of these settings: the run-config schema reads them from
here. Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["ModulationSpec", "FACTORIZATIONS", "check_kernel_generator_options"]

#: KML's generator factorisations (:class:`~kml.modulation.KernelGenerator`)
FACTORIZATIONS = ("channel", "published", "full")


def check_kernel_generator_options(rank: int, factorization: str) -> None:
    """The checks of KML's generator options, shared by :class:`ModulationSpec` (so the run
    config's ``modulation.rank`` and ``modulation.factorization``) and
    :class:`~kml.modulation.KernelGenerator`.

    Raises:
        ValueError: one line naming the option, its value and the allowed values.
    """
    if factorization not in FACTORIZATIONS:
        raise ValueError(f"factorization={factorization!r} is not valid; use one of: {', '.join(FACTORIZATIONS)}")
    if rank < 1:
        raise ValueError(f"rank={rank} is out of range: it must be >= 1")


@dataclass(frozen=True)
class ModulationSpec:
    """What a backbone's modulated layers are built with.

    Attributes:
        name: the registered modulation (``"none"``, ``"film"``, ``"kml"`` or a user's own,
            :func:`kml.modulation.list_modulations`).
        task_dim: size of the task embedding ``v`` the generators read.
        hidden: hidden layer sizes of each generator MLP (``()``: one linear layer).
        rank: KML's number ``r`` of outer products summed in ``M(v)``.
        factorization: KML's factors: ``"channel"`` (``C_out x C_in*k*k``), ``"published"``
            (the published code's sizes) or ``"full"`` (every kernel element).
        identity: KML's ``W * (1 + M)`` (``True``, the paper) or ``W * M`` (the published code).
        options: the modulation's own settings (``modulation.options.*``), checked by its
            layer class (``check_spec``).

    Built-in modulations ignore the settings they do not use (FiLM reads ``task_dim``
    and ``hidden`` only), but every spec is checked when it is made.

    Raises:
        ValueError: ``task_dim < 1``, ``rank < 1`` or an unknown ``factorization`` (one line
            naming the field; the run config prefixes ``modulation.``).
    """

    name: str = "none"
    task_dim: int = 128
    hidden: tuple[int, ...] = ()
    rank: int = 1
    factorization: str = "channel"
    identity: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "options", dict(self.options or {}))
        if self.task_dim < 1:
            raise ValueError(f"task_dim={self.task_dim} is out of range: it must be >= 1")
        check_kernel_generator_options(self.rank, self.factorization)

    @classmethod
    def from_config(cls, modulation: Any) -> "ModulationSpec":
        """The spec of a run config's ``modulation`` section (a ``DictConfig`` or any
        object with the same attributes)."""
        options = getattr(modulation, "options", None) or {}
        if hasattr(options, "items") and not isinstance(options, dict):
            from omegaconf import OmegaConf

            options = OmegaConf.to_container(options, resolve=True)
        return cls(
            name=str(modulation.name),
            task_dim=int(modulation.task_dim),
            hidden=tuple(modulation.hidden),
            rank=int(modulation.rank),
            factorization=str(modulation.factorization),
            identity=bool(modulation.identity),
            options=options,
        )
