"""Declared options: a frozen dataclass whose fields are a component's settings, each with
its type, its default and one line of doc.

Every registered learner declares its ``Options`` this way (:class:`kml.learners.MAML`'s
inner loop, :class:`kml.learners.ProtoNet`'s protocol), and so do the settings of the
modulated layers (:class:`kml.modulation_spec.ModulationSpec`) and of the backbone
(:class:`kml.backbone_spec.BackboneSpec`). The declaration is the one source of each
default: the config groups (``learner=<name>``), the validation of a run config, ``--help``
and :func:`kml.learners.build_learner` read it. A field is written with :func:`option`::

    @dataclass(frozen=True)
    class Options(LearnerOptions):
        scale: float = option(10.0, "the cosine logits' temperature")

and :func:`options_from` turns a mapping of plain values (a config section, keywords) into
an instance, converting each value to the field's type, with one-line errors that name
the setting. Importable without torch.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import typing
from typing import Any, Mapping, Sequence, TypeVar

__all__ = ["option", "option_fields", "options_from", "option_lines", "options_or_keywords", "OptionError"]

T = TypeVar("T")


class OptionError(ValueError):
    """A value that is not one of a component's options, or not of its type (one line)."""


def option(default: Any, doc: str) -> Any:
    """A dataclass field with ``default`` and one line of ``doc`` (``metadata["doc"]``).
    A list or mapping default is copied for every instance."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def option_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The declared fields of an options dataclass, by name, in order."""
    return {f.name: f for f in dataclasses.fields(cls)}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def option_lines(cls: type, prefix: str = "") -> list[str]:
    """One ``name: type = default  # doc`` line per option (``--help`` and docs)."""
    hints = typing.get_type_hints(cls)
    lines = []
    for name, f in option_fields(cls).items():
        hint = hints[name]
        kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        lines.append(f"{prefix}{name}: {kind} = {_default(f)!r}  # {f.metadata.get('doc', '')}")
    return lines


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (``bool``, ``int``, ``float``, ``str``, ``Optional``, tuples
    and lists of those, mappings, ``Any``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union:  # Optional[X] and X | None
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return _convert(value, rest[0] if len(rest) == 1 else Any, key)
    if origin in (tuple, list, collections.abc.Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not hasattr(value, "__iter__"):
            raise OptionError(f"{key}={value!r} is not a list; pass a list, e.g. {key}=[1,2]")
        element = args[0] if args else Any
        items = [_convert(v, element, key) for v in value]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, collections.abc.Mapping) or tp in (dict, Mapping):
        if not hasattr(value, "items"):
            raise OptionError(f"{key}={value!r} is not a mapping; pass {{name: value, ...}}")
        return {str(k): v for k, v in dict(value).items()}
    return _scalar(value, tp, key)


def _scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise OptionError(f"{key}={value!r} is not a boolean; pass true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise OptionError(f"{key}={value!r} is not an integer; pass a whole number")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise OptionError(f"{key}={value!r} is not a number; pass a number, e.g. {key}=0.5")
    if tp is str:
        if isinstance(value, str):
            return value
        raise OptionError(f"{key}={value!r} is not a string; pass a name")
    return value


def options_from(cls: type[T], values: Mapping[str, Any], where: str, owner: str = "") -> T:
    """An instance of the options dataclass ``cls`` from ``values`` (missing ones keep their
    defaults), each converted to its field's type.

    Args:
        where: the prefix of the settings in messages (``"learner"`` gives
            ``learner.inner_steps=...``).
        owner: what the options belong to, in the unknown-key message (``"learner maml"``).

    Raises:
        OptionError: a key that is not an option (the message lists the options), a value
            of the wrong type, or one the dataclass refuses (its ``ValueError``), each in one
            line naming ``<where>.<key>``.
    """
    fields = option_fields(cls)
    unknown = [key for key in values if key not in fields]
    if unknown:
        whose = f" of {owner}" if owner else ""
        raise OptionError(f"{where}.{unknown[0]} is not an option{whose}; its options: {', '.join(fields) or 'none'}")
    hints = typing.get_type_hints(cls)
    converted = {key: _convert(value, hints[key], f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**converted)
    except OptionError:
        raise
    except (TypeError, ValueError) as err:
        raise OptionError(f"{where}.{err}") from None


def options_or_keywords(cls: type[T], options: T | None, keywords: Mapping[str, Any], function: str) -> T:
    """``options`` (a ``cls``), or one made of kml 0.1's keywords of ``function``, its fields,
    with a ``DeprecationWarning`` that names the new call (attributed to ``function``'s caller:
    call this from ``function`` itself).

    Raises:
        TypeError: a keyword that is not a field of ``cls``, or both ``options`` and keywords.
    """
    import warnings

    if not keywords:
        return options if options is not None else cls()
    unknown = sorted(set(keywords) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"{function}() got unexpected keyword argument(s) {', '.join(unknown)}")
    if options is not None:
        raise TypeError(f"pass the options once: options={cls.__name__}(...), not also its fields as keywords")
    named = ", ".join(f"{k}=..." for k in keywords)
    warnings.warn(f"{function}({named}) is now {function}(..., options={cls.__name__}({named}))",
                  DeprecationWarning, stacklevel=3)
    return cls(**keywords)

