"""``synthetic_glyphs``: Omniglot-like characters rendered from bundled fonts.

Classes are Unicode letters (categories Lu, Ll, Lo of the Basic Multilingual
Plane) drawn from many scripts (Latin, Greek, Cyrillic, Armenian, Hebrew,
Arabic, Georgian, Canadian syllabics, Tifinagh, N'Ko, Lao, Lisu, Ogham,
Coptic, ...) that at least two of the fonts shipped with matplotlib cover
(DejaVu Sans / Serif / Mono and STIX, regular, bold and italic faces). Classes
are picked round-robin over scripts, skipping any glyph whose normalised
shape is too close to an already chosen one (``O`` vs Cyrillic ``О``), so no
two classes look alike.

Each image renders its class's letter in a random covering font with random
stroke thickening, rotation, shear, scale and offset, supersampled and
area-averaged to the image size: white strokes (1) on black (0), one channel,
like prepared Omniglot.
"""

from __future__ import annotations

import os
import unicodedata
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kml.data.synthetic.base import SyntheticSpec

FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)  # fmt: skip
LETTER_CATEGORIES = ("Lu", "Ll", "Lo")
MIN_FONTS = 2
CANON = 20  # side of the normalised shape used to reject look-alikes
MIN_DISTANCE = 0.32  # RMS distance between normalised shapes below which two letters count as one
REFERENCE_SIZE = 100


def font_dir() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


@lru_cache(maxsize=1)
def available_fonts() -> tuple[str, ...]:
    """The :data:`FONT_FILES` present in this matplotlib (full paths)."""
    folder = font_dir()
    return tuple(os.path.join(folder, f) for f in FONT_FILES if os.path.isfile(os.path.join(folder, f)))


@lru_cache(maxsize=1)
def coverage() -> dict[int, tuple[int, ...]]:
    """Letter code point -> indices (into :func:`available_fonts`) of the fonts that have it."""
    from fontTools.ttLib import TTFont

    cover: dict[int, list[int]] = {}
    for index, path in enumerate(available_fonts()):
        for code in TTFont(path, lazy=True)["cmap"].getBestCmap():
            if code < 0x10000 and unicodedata.category(chr(code)) in LETTER_CATEGORIES:
                cover.setdefault(code, []).append(index)
    return {code: tuple(fonts) for code, fonts in sorted(cover.items()) if len(fonts) >= MIN_FONTS}


@lru_cache(maxsize=4096)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _script(code: int) -> str:
    return unicodedata.name(chr(code), "UNKNOWN").split(" ")[0]


def _draw(code: int, font_path: str, font_size: int, canvas: int, stroke: int) -> Image.Image | None:
    """The letter centred on a black ``canvas`` square; None when it has no ink."""
    font = _font(font_path, font_size)
    char = chr(code)
    box = font.getbbox(char, stroke_width=stroke)
    width, height = box[2] - box[0], box[3] - box[1]
    if width <= 0 or height <= 0:
        return None
    image = Image.new("L", (canvas, canvas), 0)
    origin = ((canvas - width) / 2 - box[0], (canvas - height) / 2 - box[1])
    ImageDraw.Draw(image).text(origin, char, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return image


@lru_cache(maxsize=65536)
def _extent(code: int, font_path: str) -> int:
    """Largest side of the letter's ink box at the reference size."""
    image = _draw(code, font_path, REFERENCE_SIZE, 4 * REFERENCE_SIZE, 0)
    box = image.getbbox() if image is not None else None
    return max(box[2] - box[0], box[3] - box[1], 1) if box else REFERENCE_SIZE


def canonical_shape(code: int, font_path: str) -> np.ndarray | None:
    """Normalised (bbox-fitted, unit-norm) ``CANON x CANON`` shape, or None if degenerate."""
    image = _draw(code, font_path, REFERENCE_SIZE, 2 * REFERENCE_SIZE, 0)
    if image is None:
        return None
    box = image.getbbox()
    if box is None:
        return None
    width, height = box[2] - box[0], box[3] - box[1]
    if max(width, height) < 0.25 * REFERENCE_SIZE or min(width, height) < 0.08 * REFERENCE_SIZE:
        return None  # dots, dashes, tiny marks
    side = max(width, height)
    square = Image.new("L", (side, side), 0)
    square.paste(image.crop(box), ((side - width) // 2, (side - height) // 2))
    shape = np.asarray(square.resize((CANON, CANON), Image.Resampling.BOX), dtype=np.float32) / 255.0
    ink = shape.mean()
    if ink < 0.04 or ink > 0.6:
        return None
    return shape.ravel() / np.linalg.norm(shape)


class SyntheticGlyphs(SyntheticSpec):
    name = "synthetic_glyphs"
    title = "synthetic glyphs (fonts bundled with matplotlib)"
    mode_id = 1
    num_classes = 300
    images_per_class = 20
    grayscale = True
    polarity = "light_on_dark"

    def class_params(self, rng: np.random.Generator, num_classes: int) -> list[tuple[int, tuple[int, ...]]]:
        cover = coverage()
        fonts = available_fonts()
        by_script: dict[str, list[int]] = {}
        for code in cover:
            by_script.setdefault(_script(code), []).append(code)
        queues = []
        for script in sorted(by_script):
            codes = by_script[script]
            queues.append([codes[i] for i in rng.permutation(len(codes))])
        chosen: list[tuple[int, tuple[int, ...]]] = []
        shapes = np.zeros((0, CANON * CANON), dtype=np.float32)
        while len(chosen) < num_classes and any(queues):
            for queue in queues:
                while queue:
                    code = queue.pop()
                    shape = canonical_shape(code, fonts[cover[code][0]])
                    if shape is None:
                        continue
                    if len(shapes) and np.sqrt(((shapes - shape) ** 2).sum(1).min()) < MIN_DISTANCE:
                        continue
                    chosen.append((code, cover[code]))
                    shapes = np.concatenate([shapes, shape[None]])
                    break
                if len(chosen) == num_classes:
                    break
        if len(chosen) < num_classes:  # pragma: no cover - depends on matplotlib's fonts
            raise RuntimeError(f"only {len(chosen)} distinct glyph classes available, {num_classes} requested")
        return chosen

    def render_class(self, params, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        code, font_indices = params
        fonts = available_fonts()
        canvas = 2 * max(size, 32)
        out = np.empty((count, size, size), dtype=np.uint8)
        for i in range(count):
            path = fonts[font_indices[rng.integers(len(font_indices))]]
            stroke = int(rng.integers(0, 3)) * canvas // 64
            target = canvas * rng.uniform(0.5, 0.7)
            font_size = max(4, int(round(REFERENCE_SIZE * target / _extent(code, path))))
            image = _draw(code, path, font_size, canvas, stroke)
            angle = np.deg2rad(rng.uniform(-15, 15))
            shear = rng.uniform(-0.25, 0.25)
            scale = rng.uniform(0.85, 1.1)
            shift = rng.uniform(-0.08, 0.08, size=2) * canvas
            # forward map: p' = c + A (p - c) + shift; PIL wants the inverse (output -> input)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            forward = scale * rot @ np.array([[1.0, shear], [0.0, 1.0]])
            inverse = np.linalg.inv(forward)
            centre = np.array([canvas / 2, canvas / 2])
            offset = centre - inverse @ (centre + shift)
            coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
            image = image.transform((canvas, canvas), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
            out[i] = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)
        return out[..., None]

    def describe(self) -> dict:
        import matplotlib

        return {
            "fonts": [os.path.basename(p) for p in available_fonts()],
            "matplotlib": matplotlib.__version__,
            "min_fonts_per_letter": MIN_FONTS,
        }


SPEC = SyntheticGlyphs()
