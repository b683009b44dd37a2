"""Shared validators of every configuration schema: choices, ranges, unknown keys.

Every check raises :class:`ConfigError` (a :class:`kml.errors.KmlError`) with a
one-line message that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kml.errors import KmlError

__all__ = [
    "ConfigError",
    "choice",
    "at_least",
    "unknown_keys",
    "unknown_key_message",
    "resolves",
    "reject_unknown_keys",
]


class ConfigError(KmlError):
    """A config value out of range or inconsistent."""


def choice(value: str, allowed: tuple[str, ...], key: str, registered: bool = False) -> None:
    """``value`` must be one of ``allowed`` (``registered``: names of a registry, which a
    user's own module adds to when it is imported)."""
    if value not in allowed:
        hint = "; a name of your own is registered when its module is imported: list it in imports=[...]"
        message = f"{key}={value!r} is not valid; use one of: {', '.join(allowed)}"
        raise ConfigError(message + (hint if registered else ""))


def at_least(value: float | int | None, minimum: float, key: str, strict: bool = False) -> None:
    """``value`` (``None`` passes) must be finite and ``>= minimum`` (``> minimum`` when ``strict``)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value} is not a finite number; pass a number {'>' if strict else '>='} {minimum}")
    bad = value <= minimum if strict else value < minimum
    if bad:
        relation = ">" if strict else ">="
        raise ConfigError(f"{key}={value} is out of range: it must be {relation} {minimum}")


def _fields(schema: type) -> dict[str, Any]:
    """``{name: type}`` of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _nested_schema(tp: Any) -> type | None:
    """The config dataclass behind a field type (``X`` or ``Optional[X]``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def unknown_keys(cfg: DictConfig, schema: type) -> list[str]:
    """Dotted keys of ``cfg`` that ``schema`` does not define (added with ``+key=...``),
    and dataclass-typed keys that were deleted (``~key``)."""

    def walk(value: dict, node: type, prefix: str) -> list[str]:
        fields = _fields(node)
        out = [prefix + key for key in value if key not in fields]
        for key, tp in fields.items():
            nested = _nested_schema(tp)
            if nested is None:
                continue
            if key not in value and typing.get_origin(tp) is None:
                out.append(prefix + key)  # a whole section was deleted
            elif isinstance(value.get(key), dict):
                out += walk(value[key], nested, prefix + key + ".")
        return out

    return walk(OmegaConf.to_container(cfg, resolve=False), schema, "")


def unknown_key_message(key: str, schema: type) -> str:
    """One line naming an unknown dotted ``key``, the closest valid key and the valid keys
    at that level of ``schema``."""
    node, prefix = schema, []
    for part in key.split("."):
        fields = _fields(node)
        if part not in fields:
            where = ".".join(prefix)
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {'.'.join(prefix + close)}?)" if close else ""
            level = f"of {where}" if where else "at the top level"
            return f"unknown config key {key!r}{hint}; valid keys {level}: {', '.join(fields)}"
        nested = _nested_schema(fields[part])
        if nested is None:
            return f"unknown config key {key!r}: {'.'.join(prefix + [part])} is a value, not a section"
        node = nested
        prefix.append(part)
    return f"config key {key!r} is missing; do not delete it (~{key})"


def resolves(c: DictConfig) -> None:
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(c, resolve=True)
    except OmegaConfBaseException as err:
        where = getattr(err, "full_key", None)
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"config value {where or ''} cannot be resolved ({detail}); fix or remove that override".replace("  ", " ")
        ) from None


def reject_unknown_keys(cfg: DictConfig, schema: type) -> None:
    """Raise :class:`ConfigError` for the first key of ``cfg`` that ``schema`` does not define."""
    extra = unknown_keys(cfg, schema)
    if extra:
        added = OmegaConf.select(cfg, extra[0], default=None, throw_on_resolution_failure=False) is not None
        hint = "; remove it (a '+key=value' override adds keys)" if added else ""
        raise ConfigError(unknown_key_message(extra[0], schema) + hint)
