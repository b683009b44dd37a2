"""Seeded, sorted class splits.

The reference code shuffled ``os.listdir`` output, so its splits depended on
the machine. Here a split is a pure function of the sorted class names and a
seed, and is recorded in the prepared manifest.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


def split_sizes(num_classes: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[int, int, int]:
    """Class counts (train, val, test): train and val rounded, test takes the rest.

    200 -> (140, 30, 30); 100 -> (70, 15, 15); 43 -> (30, 6, 7).
    """
    train = int(round(num_classes * fractions[0]))
    val = int(round(num_classes * fractions[1]))
    train = min(train, num_classes)
    val = min(val, num_classes - train)
    return train, val, num_classes - train - val


def seeded_class_split(
    classes: Sequence[str], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """Split class names into train/val/test.

    The names are sorted, permuted with ``numpy.random.default_rng(seed)``, cut
    into the :func:`split_sizes` counts, and each part is sorted again.
    """
    ordered = sorted(set(classes))
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in permutation]
    n_train, n_val, _ = split_sizes(len(ordered), fractions)
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train : n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val :]),
    }
