"""Named registries of what varies: modulations, learners and backbones.

Each kind has one :class:`Registry`, kept next to its base class
(:func:`kml.modulation.register_modulation`, :func:`kml.learners.register_learner`,
:func:`kml.backbone.register_backbone`). Everything that needs the list of names (config
validation, method names, the campaign planner, the benchmark, the diagnostics) reads
the registry, so a class registered in a user's own module is selectable everywhere.
An unknown name is one error line that lists the registered names.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from kml.errors import KmlError

__all__ = ["Registry", "UnknownNameError"]

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
            raise UnknownNameError(f"{self.kind} must be one of {self.names()}, got {name!r}") from None

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
