"""Named registries of what varies: modulations, learners and backbones.

This module holds each kind's table (:data:`MODULATIONS`, :data:`LEARNERS`,
:data:`BACKBONES`) and the functions that read it; the decorators that fill them are kept
next to each base class (:func:`kml.modulation.register_modulation`,
:func:`kml.learners.register_learner`, :func:`kml.backbone.register_backbone`), and
:mod:`kml.catalogue` imports the built-ins so that they register. Everything that needs
the list of names (config validation, method names, the campaign planner, the benchmark,
the diagnostics) reads the tables, so a class registered in a user's own module is
selectable everywhere. An unknown name is one error line that lists the registered names.

This module imports nothing of ``kml`` but its errors: every other module may import it,
and it imports none of them back.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from kml.errors import KmlError

__all__ = [
    "Registry",
    "UnknownNameError",
    "MODULATIONS",
    "LEARNERS",
    "BACKBONES",
    "get_modulation",
    "list_modulations",
    "get_learner",
    "list_learners",
    "get_backbone",
    "list_backbones",
]

T = TypeVar("T")


class UnknownNameError(KmlError, ValueError):
    """A name that is not registered; the message lists the registered names."""


class Registry(Generic[T]):
    """Names mapped to registered objects, in registration order.

    Args:
        kind: what is registered (``"modulation"``), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``. Registering the same object again (a module
        imported twice) is allowed; another object under a taken name is an error."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string without surrounding spaces, got {name!r}")
        existing = self._entries.get(name)
        if existing is not None and not _same(existing, entry):
            raise ValueError(f"{self.kind} {name!r} is already registered ({_describe(existing)}); choose another name")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str, prepare: Callable[[T], None] | None = None) -> Callable[[T], T]:
        """A class decorator that registers the class under ``name`` (after ``prepare(cls)``)."""

        def register(entry: T) -> T:
            if prepare is not None:
                prepare(entry)
            return self.add(name, entry)

        return register

    def get(self, name: str) -> T:
        """The entry of ``name``.

        Raises:
            UnknownNameError: ``name`` is not registered (the message lists the names).
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"{self.kind} must be one of {self.names()}, got {name!r}; a {self.kind} of your own is registered "
                "when its module is imported: list it in imports=[...]"
            ) from None

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


def _same(a: object, b: object) -> bool:
    """The same object, or the same class defined again (a module reloaded)."""
    if a is b:
        return True
    return (
        isinstance(a, type)
        and isinstance(b, type)
        and (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
    )


def _describe(entry: object) -> str:
    if isinstance(entry, type):
        return f"{entry.__module__}.{entry.__qualname__}"
    return repr(entry)


#: the modulated layer classes by name (``"none"``: no modulation)
MODULATIONS: Registry = Registry("modulation")
MODULATIONS.add("none", None)
#: the meta-learner classes by name
LEARNERS: Registry = Registry("learner")
#: the backbone classes by name
BACKBONES: Registry = Registry("backbone")


def get_modulation(name: str):
    """The layer class registered under ``name`` (``None`` for ``"none"``).

    Raises:
        UnknownNameError: an unregistered name (the message lists the names).
    """
    return MODULATIONS.get(name)


def list_modulations() -> tuple[str, ...]:
    """The registered modulation names, ``("none", "film", "kml", ...)``."""
    return MODULATIONS.names()


def get_learner(name: str):
    """The learner class registered under ``name``.

    Raises:
        UnknownNameError: an unregistered name (the message lists the names).
    """
    return LEARNERS.get(name)


def list_learners() -> tuple[str, ...]:
    """The registered learner names, ``("maml", "protonet", ...)``."""
    return LEARNERS.names()


def get_backbone(name: str):
    """The backbone class registered under ``name``.

    Raises:
        UnknownNameError: an unregistered name (the message lists the names).
    """
    return BACKBONES.get(name)


def list_backbones() -> tuple[str, ...]:
    """The registered backbone names, ``("conv4", "resnet12", ...)``."""
    return BACKBONES.names()
