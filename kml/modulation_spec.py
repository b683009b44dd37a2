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

__all__ = ["ModulationSpec", "FACTORIZATIONS", "INITS", "check_kernel_generator_options", "check_init"]

#: KML's generator factorisations (:class:`~kml.modulation.KernelGenerator`)
FACTORIZATIONS = ("channel", "published", "full")
#: how the generators and the task encoder start (``modulation.init``): ``default`` (kml's:
#: the identity modulation, a Xavier-uniform task encoder) or ``published`` (the published KML
#: code's: PyTorch's default init of the mask heads and of the task encoder)
INITS = ("default", "published")


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


def check_init(init: str, identity: bool) -> None:
    """The check of ``init`` (:data:`INITS`), shared by :class:`ModulationSpec` and
    :class:`~kml.modulation.KernelGenerator`: the published initialisation starts the mask
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
        init: ``"default"`` (kml's: the mask heads ``g1``, ``g3`` start at zero so the layer
            starts as the plain convolution; the task encoder Xavier-uniform) or
            ``"published"`` (the published code's: every mask head a linear layer at
            PyTorch's default init, so ``M`` starts small, random and task-dependent; the task
            encoder at PyTorch's default init too). ``"published"`` needs ``identity=False``.
        options: the modulation's own settings (``modulation.options.*``), checked by its
            layer class (``check_spec``).

    Built-in modulations ignore the settings they do not use (FiLM reads ``task_dim``
    and ``hidden`` only), but every spec is checked when it is made.

    Raises:
        ValueError: ``task_dim < 1``, ``rank < 1``, an unknown ``factorization`` or ``init``,
            or ``init="published"`` with ``identity=True`` (one line naming the field; the run
            config prefixes ``modulation.``).
    """

    name: str = "none"
    task_dim: int = 128
    hidden: tuple[int, ...] = ()
    rank: int = 1
    factorization: str = "channel"
    identity: bool = True
    init: str = "default"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "options", dict(self.options or {}))
        if self.task_dim < 1:
            raise ValueError(f"task_dim={self.task_dim} is out of range: it must be >= 1")
        check_kernel_generator_options(self.rank, self.factorization)
        check_init(self.init, self.identity)

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
            init=str(modulation.init),
            options=options,
        )
