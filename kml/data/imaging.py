"""Image decoding and the one preprocessing step every dataset shares.

``prepare_image`` turns the bytes of one source image into a uint8
``(size, size, C)`` array: decode (naming the file on failure), optional
bottom crop (FGVC-Aircraft's copyright banner), colour conversion (``L`` for
grayscale datasets, ``RGB`` otherwise: grayscale JPEGs become 3 equal
channels), resize to ``size x size`` ignoring the aspect ratio (LANCZOS, as the
reference code), optional inversion (Omniglot: strokes 255, background 0).

Each dataset states its settings of that step once, as a :class:`Preprocessing`
(:attr:`kml.data.datasets.base.DatasetSpec.preprocessing`): the preparation applies it
to the source files, a run records it (``run_info.json``, ``data.<dataset>.preprocessing``)
and :func:`kml.data.load_images` applies it to a user's files, so that an image file gives the
pixels its prepared copy has. The samplers and :func:`kml.data.load_images` then scale the
uint8 pixels by :data:`PIXEL_SCALE` (``x / 255``, into ``[0, 1]``; no mean or standard
deviation is subtracted) and serve 3 channels (a grayscale image as 3 equal ones).
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from kml.data.errors import DataError

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

RESAMPLE = Image.Resampling.LANCZOS
#: how stored uint8 pixels become a learner's input: ``x * PIXEL_SCALE``, in ``[0, 1]``
PIXEL_SCALE = 1.0 / 255.0
#: channels of every image a learner gets (grayscale images as 3 equal channels)
OUTPUT_CHANNELS = 3
#: the polarities a dataset's prepared images may have (``None``: no fixed polarity, as
#: photographs): light strokes on a dark background (mean intensity below 0.5), or the reverse
POLARITIES = ("light_on_dark", "dark_on_light")


@dataclass(frozen=True)
class Preprocessing:
    """How one dataset's source image files become its prepared pixels.

    Args:
        grayscale (bool, optional): convert to one channel (``L``); otherwise ``RGB``.
            Default: ``False``.
        crop_bottom (int, optional): rows cut from the bottom before resizing, in
            pixels of the source image (FGVC-Aircraft's copyright banner). Default: ``0``.
        invert (bool, optional): ``255 - x`` after resizing (Omniglot's black-on-white
            scans become white strokes on black). Default: ``False``.
        polarity (str, optional): one of :data:`POLARITIES` when every prepared image
            has it (Omniglot: ``"light_on_dark"``), ``None`` otherwise. Default: ``None``.
        generated (bool, optional): the dataset's own images are rendered at the image
            size by a generator (the synthetic modes); the other settings then say how an
            image file is made to match them. Default: ``False``.
    """

    grayscale: bool = False
    crop_bottom: int = 0
    invert: bool = False
    polarity: str | None = None
    generated: bool = False

    def __post_init__(self) -> None:
        if self.polarity is not None and self.polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {POLARITIES} or None, got {self.polarity!r}")

    @property
    def channels(self) -> int:
        """Channels of the prepared arrays (1 or 3)."""
        return 1 if self.grayscale else 3

    def apply(self, data: bytes, name: str, size: int, fix: str | None = None) -> np.ndarray:
        """uint8 ``(size, size, channels)`` pixels of one image file's bytes (see
        :func:`prepare_image`; ``name`` and ``fix`` go into its error message)."""
        options = {} if fix is None else {"fix": fix}
        return prepare_image(data, name, size, grayscale=self.grayscale, crop_bottom=self.crop_bottom,
                             invert=self.invert, **options)

    def describe(self, image_size: int) -> dict:
        """The record of this preprocessing at ``image_size``, as a run stores it.

        Returns:
            ``{"source", "crop", "colour", "size", "resize", "invert", "polarity",
            "stored_channels", "channels", "normalisation"}``.
        """
        return {
            "source": "rendered by the generator at the image size" if self.generated else "decoded image files",
            "crop": {"bottom_pixels": int(self.crop_bottom)} if self.crop_bottom else None,
            "colour": "grayscale" if self.grayscale else "RGB",
            "size": [int(image_size), int(image_size)],
            "resize": "LANCZOS to size x size, aspect ratio not kept",
            "invert": bool(self.invert),
            "polarity": self.polarity,
            "stored_channels": self.channels,
            "channels": OUTPUT_CHANNELS,
            "normalisation": "x / 255 (pixels in [0, 1]); no mean or std subtracted",
        }


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


