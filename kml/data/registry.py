"""Dataset names: the real datasets, the synthetic modes, the ``synthetic`` mixture and
the folder datasets of your own prepared in a data root.

A folder dataset needs no registration: given ``root``, a name that is not a
built-in one is looked up as ``<root>/<name>/`` (see
:func:`kml.data.datasets.folder.find_folder_dataset`).
"""

from __future__ import annotations

import os
from typing import Sequence

from kml.data.datasets import REAL_SPECS
from kml.data.datasets.base import DatasetSpec
from kml.data.datasets.folder import find_folder_dataset, folder_dataset_names, is_safe_name, prepare_folder_command
from kml.data.errors import DataError
from kml.data.synthetic import SYNTHETIC_MIXTURE, SYNTHETIC_SPECS

SPECS: dict[str, DatasetSpec] = {**REAL_SPECS, **SYNTHETIC_SPECS}
MIXTURES: dict[str, tuple[str, ...]] = {"synthetic": SYNTHETIC_MIXTURE}
#: names a folder dataset may not take: they mean something to ``scripts/prepare_data.py``
#: (``all``, ``folder``), to the data root (``downloads``) or to config files
RESERVED_NAMES = ("all", "folder", "downloads", "true", "false", "null", "none")

Root = str | os.PathLike | None


def known_names(root: Root = None) -> list[str]:
    """Every accepted name: datasets, synthetic modes, named mixtures, and the folder
    datasets prepared in ``root`` (when given)."""
    return [*SPECS, *MIXTURES, *(folder_dataset_names(root) if root is not None else [])]


def get_spec(name: str, root: Root = None) -> DatasetSpec:
    """The spec of one dataset, synthetic mode or (with ``root``) folder dataset prepared in
    ``root``; DataError listing the known names otherwise."""
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        pass
    if root is not None and is_safe_name(name):
        spec = find_folder_dataset(root, name)
        if spec is not None:
            return spec
    message = f"unknown dataset {name!r}; known datasets: {', '.join(known_names(root))}"
    if _free_name(name):
        command = prepare_folder_command(name, root)
        message += f"; to use a folder of your own images under this name, prepare it first: {command}"
    raise DataError(message)


def _free_name(name: object) -> bool:
    return is_safe_name(name) and _taken_by(str(name)) is None


def _taken_by(name: str) -> str | None:
    """What already means ``name`` (compared case-insensitively), or None."""
    lowered = name.lower()
    for builtin in SPECS:
        if builtin.lower() == lowered:
            return f"the built-in dataset {builtin!r}"
    for mixture in MIXTURES:
        if mixture.lower() == lowered:
            return f"the mixture {mixture!r}"
    if lowered in RESERVED_NAMES:
        return "a word with a meaning of its own to the scripts"
    return None


def check_folder_name(name: object) -> str:
    """``name`` if a folder dataset may take it: a safe folder name that is no built-in
    dataset, mixture or reserved word (case-insensitively, for case-insensitive file systems).

    Raises:
        DataError: naming the problem and the fix.
    """
    if not is_safe_name(name):
        raise DataError(
            f"name={name!r} is not a safe folder name; use up to 64 letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (e.g. name=my_birds)"
        )
    taken = _taken_by(str(name))
    if taken is not None:
        raise DataError(f"name={name} is taken by {taken}; choose another name for your dataset (e.g. name=my_{name})")
    return str(name)


def resolve_names(name_or_names: str | Sequence[str], root: Root = None) -> list[str]:
    """Expand a name, a comma-separated string or a list into dataset names (mixtures expanded, order kept).

    With ``root``, the folder datasets prepared there are accepted too.
    """
    if isinstance(name_or_names, str):
        items = [part.strip() for part in name_or_names.split(",") if part.strip()]
    else:
        items = [str(part).strip() for part in name_or_names]
    if not items:
        raise DataError(f"no dataset named; pass one of: {', '.join(known_names(root))}")
    names: list[str] = []
    for item in items:
        for name in MIXTURES.get(item, (item,)):
            get_spec(name, root)
            if name in names:
                raise DataError(f"dataset {name!r} is listed twice in the mixture; list each dataset once")
            names.append(name)
    return names
