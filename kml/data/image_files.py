"""Image files as a learner's input: :func:`load_images` reads a user's files with the
preprocessing of a named dataset (:class:`kml.data.imaging.Preprocessing`), so that a file
gives the pixels its prepared copy has, and warns when the files' polarity is the opposite
of that dataset's.

Every image is resized to ``image_size x image_size`` ignoring the aspect ratio (LANCZOS)
and scaled by ``1 / 255`` exactly as the samplers scale the prepared arrays. When the
dataset's prepared images have a fixed polarity (Omniglot's and the synthetic glyphs' are
light on dark, mean intensity below 0.5) and an image's mean lies on the other side of 0.5
after preprocessing, one line is logged as a warning: such an image is likely inverted
already, or not of that kind.

Example:

    learner, config = kml.load_run("outputs/<date>/<run>")
    size = config.data.image_size
    support = load_images(["a.png", "b.png", "c.png"], size, dataset="omniglot")[None]  # (1, 3, 3, size, size)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from kml.data.errors import DataError
from kml.data.imaging import OUTPUT_CHANNELS, PIXEL_SCALE, Preprocessing
from kml.data.registry import get_spec

if TYPE_CHECKING:
    import torch

__all__ = ["load_images"]

logger = logging.getLogger(__name__)


def load_images(
    paths: Sequence[str | os.PathLike],
    image_size: int,
    dataset: str | None = None,
    root: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Image files as a learner's input, preprocessed as the named dataset's prepared images.

    A run has several datasets, so name the one the images are like: ``dataset="omniglot"``
    converts to grayscale and inverts (the official scans are black strokes on white, the
    prepared images white on black), ``dataset="aircraft"`` crops the banner, and so on
    (each dataset's settings are in the run's ``run_info.json``, under
    ``data.<dataset>.preprocessing``). Without ``dataset`` the files are treated as a
    prepared folder dataset's images: RGB, no crop, no inversion.

    Every image is resized and scaled as the samplers serve the prepared arrays (see the
    module docstring for the polarity warning and an example).

    Args:
        paths: the image files, in order.
        image_size: side of the square output; use the run's ``config.data.image_size``.
        dataset: the dataset whose preprocessing to apply (a name of
            :func:`kml.data.known_names`). Default: ``None`` (a folder dataset's).
        root: the data root, needed only when ``dataset`` is a folder dataset of your own.
            Default: ``None``.

    Returns:
        float32 ``(M, 3, image_size, image_size)`` in ``[0, 1]``, ``M = len(paths)``
        (grayscale images as 3 equal channels). Stack the tensors of each task with a
        leading task dimension for :meth:`kml.learners.MetaLearner.predict`.

    Raises:
        DataError: a file that cannot be read or decoded (named), no paths, or an
            unknown dataset.
    """
    import torch

    preprocessing = Preprocessing()
    if dataset is not None:
        preprocessing = get_spec(dataset, root).preprocessing
    stacked = torch.from_numpy(_read(paths, preprocessing, int(image_size)))  # (M, H, W, C) uint8
    if preprocessing.polarity is not None:
        _check_polarity(stacked, [str(p) for p in paths], preprocessing.polarity, str(dataset))
    # the samplers' channels and scaling, so a file gives the same pixels as its prepared copy
    images = stacked.permute(0, 3, 1, 2).expand(-1, OUTPUT_CHANNELS, -1, -1)
    return images.to(torch.float32).mul_(PIXEL_SCALE).contiguous()


def _read(paths: Sequence[str | os.PathLike], preprocessing: Preprocessing, image_size: int) -> np.ndarray:
    """The files' uint8 ``(M, H, W, C)`` pixels after ``preprocessing``.

    Raises:
        DataError: a file that cannot be read or decoded (named), or no paths.
    """
    arrays = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise DataError(f"cannot read image {str(path)!r} ({error.strerror or error}); check the path") from None
        arrays.append(preprocessing.apply(data, str(path), image_size, fix="pass another image"))
    if not arrays:
        raise DataError("no image files given; pass at least one path")
    return np.stack(arrays)


def _check_polarity(images: torch.Tensor, names: list[str], polarity: str, dataset: str) -> None:
    """Log one warning line when images ``(M, H, W, C)`` uint8 have a mean intensity on the
    other side of 0.5 from ``polarity``."""
    means = images.reshape(images.shape[0], -1).double().mean(dim=1).mul_(PIXEL_SCALE).tolist()
    expect_dark = polarity == "light_on_dark"
    off = [i for i, mean in enumerate(means) if (mean > 0.5 if expect_dark else mean < 0.5)]
    if not off:
        return
    first = off[0]
    kind = "light strokes on a dark background (mean intensity below 0.5)" if expect_dark else (
        "dark strokes on a light background (mean intensity above 0.5)")
    logger.warning(
        f"warning: {len(off)} of {len(means)} images ({names[first]!r} first, mean intensity {means[first]:.2f}) "
        f"are {'light' if expect_dark else 'dark'} on average after {dataset}'s preprocessing, but {dataset}'s "
        f"prepared images are {kind}; pass images like the dataset's own source files (they may be inverted "
        "already)"
    )
