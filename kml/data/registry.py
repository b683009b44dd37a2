"""Dataset names: the real datasets, the synthetic modes and the ``synthetic`` mixture."""

from __future__ import annotations

from typing import Sequence

from kml.data.datasets import REAL_SPECS
from kml.data.datasets.base import DatasetSpec
from kml.data.errors import DataError
from kml.data.synthetic import SYNTHETIC_MIXTURE, SYNTHETIC_SPECS

SPECS: dict[str, DatasetSpec] = {**REAL_SPECS, **SYNTHETIC_SPECS}
MIXTURES: dict[str, tuple[str, ...]] = {"synthetic": SYNTHETIC_MIXTURE}


def known_names() -> list[str]:
    """Every accepted name: datasets, synthetic modes and named mixtures."""
    return [*SPECS, *MIXTURES]


def get_spec(name: str) -> DatasetSpec:
    """The spec of one dataset or synthetic mode; DataError listing the known names otherwise."""
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(known_names())}") from None


def resolve_names(name_or_names: str | Sequence[str]) -> list[str]:
    """Expand a name, a comma-separated string or a list into dataset names (mixtures expanded, order kept)."""
    if isinstance(name_or_names, str):
        items = [part.strip() for part in name_or_names.split(",") if part.strip()]
    else:
        items = [str(part).strip() for part in name_or_names]
    if not items:
        raise DataError(f"no dataset named; pass one of: {', '.join(known_names())}")
    names: list[str] = []
    for item in items:
        for name in MIXTURES.get(item, (item,)):
            get_spec(name)
            if name in names:
                raise DataError(f"dataset {name!r} is listed twice in the mixture; list each dataset once")
            names.append(name)
    return names
