"""Image decoding and the one preprocessing step every dataset shares.

``prepare_image`` turns the bytes of one source image into a uint8
``(size, size, C)`` array: decode (naming the file on failure), optional
bottom crop (FGVC-Aircraft's copyright banner), colour conversion (``L`` for
grayscale datasets, ``RGB`` otherwise: grayscale JPEGs become 3 equal
channels), resize to ``size x size`` ignoring the aspect ratio (LANCZOS, as the
reference code), optional inversion (Omniglot: strokes 255, background 0).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from kml.data.errors import DataError

if TYPE_CHECKING:
    import torch

RESAMPLE = Image.Resampling.LANCZOS


def prepare_image(
    data: bytes,
    name: str,
    size: int,
    grayscale: bool = False,
    crop_bottom: int = 0,
    invert: bool = False,
    fix: str = "replace that file (or download the archive again) and rerun the preparation",
) -> np.ndarray:
    """Decode and preprocess one image to uint8 ``(size, size, 1 or 3)``.

    ``name`` names the file and ``fix`` says what to do in the error raised when
    it cannot be decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            original_height = image.size[1]
            if image.format == "JPEG" and not crop_bottom:
                image.draft("L" if grayscale else "RGB", (size, size))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = "not a recognised image format" if isinstance(error, UnidentifiedImageError) else str(error)
        raise DataError(
            f"corrupted or unreadable image {name!r} ({reason}); {fix}"
        ) from error
    if crop_bottom:
        crop = int(round(crop_bottom * image.size[1] / original_height))
        if image.size[1] <= crop:
            raise DataError(f"image {name!r} is only {image.size[1]} px high, cannot crop a {crop} px banner")
        image = image.crop((0, 0, image.size[0], image.size[1] - crop))
    return image_to_array(image, size, grayscale=grayscale, invert=invert)


def image_to_array(image: Image.Image, size: int, grayscale: bool = False, invert: bool = False) -> np.ndarray:
    """Convert a PIL image to uint8 ``(size, size, C)`` (see module docstring)."""
    image = image.convert("L" if grayscale else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    if invert:
        array = 255 - array
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def load_images(paths: Sequence[str | os.PathLike], image_size: int) -> torch.Tensor:
    """Image files as a learner's input: float32 ``(M, 3, image_size, image_size)`` in
    ``[0, 1]``, preprocessed exactly as a prepared folder dataset's images (RGB, resized
    to ``image_size x image_size`` ignoring the aspect ratio, LANCZOS).

    Use the trained run's ``config.data.image_size``; stack the result of each task
    with a leading task dimension for :meth:`kml.learners.MetaLearner.predict`.

    Raises:
        DataError: a file that cannot be read or decoded (named).
    """
    import torch

    arrays = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise DataError(f"cannot read image {str(path)!r} ({error.strerror or error}); check the path") from None
        arrays.append(prepare_image(data, str(path), int(image_size), fix="pass another image"))
    if not arrays:
        raise DataError("no image files given; pass at least one path")
    stacked = torch.from_numpy(np.stack(arrays))  # (M, H, W, 3) uint8
    # the samplers' scaling, so a file gives the same pixels as its prepared copy
    return stacked.permute(0, 3, 1, 2).to(torch.float32).mul_(1.0 / 255.0).contiguous()
