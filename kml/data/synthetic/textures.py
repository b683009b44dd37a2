"""``synthetic_textures``: procedural colour textures with natural-image statistics.

A class is a random stationary texture process: a log-Gabor band (centre
frequency, bandwidth) with an orientation preference (angle, concentration)
mixed with a 1/f^beta background, passed through one of four point
non-linearities (smooth, ridges, blobs, bands) and coloured by one of eight
three-colour palettes shared by all classes (so colour alone rarely names the
class). Each image is a fresh random-phase sample of that process with
jittered orientation, frequency, hue, contrast and illumination, plus sensor
noise. Neighbouring classes in parameter space look alike, so one example per
class (1-shot) leaves real ambiguity: texture recognition from its statistics.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from kml.data.synthetic.base import SyntheticSpec, to_uint8

NONLINEARITIES = ("smooth", "ridges", "blobs", "bands")
NUM_PALETTES = 8  # classes share palettes: colour alone does not name the class


@dataclass(frozen=True)
class TextureClass:
    angle: float  # preferred orientation (radians)
    concentration: float  # 0 = isotropic
    frequency: float  # band centre, cycles per image
    bandwidth: float  # log-Gabor sigma (octave-ish)
    beta: float  # 1/f^beta slope of the background
    background: float  # weight of the 1/f background vs the band
    nonlinearity: int
    gain: float
    palette: tuple[tuple[float, float, float], ...]  # three RGB colours


def _palette(rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    hue = rng.uniform()
    spread = rng.choice([0.06, 0.15, 0.5])  # analogous, near, complementary
    colours = []
    for k, value in enumerate(np.sort(rng.uniform(0.15, 0.95, size=3))):
        h = (hue + spread * (k - 1) + rng.normal(0, 0.02)) % 1.0
        colours.append(colorsys.hsv_to_rgb(h, rng.uniform(0.25, 0.9), value))
    return tuple(tuple(float(c) for c in colour) for colour in colours)


class SyntheticTextures(SyntheticSpec):
    name = "synthetic_textures"
    title = "synthetic colour textures"
    mode_id = 2
    num_classes = 300
    images_per_class = 20

    def class_params(self, rng: np.random.Generator, num_classes: int) -> list[TextureClass]:
        palettes = [_palette(rng) for _ in range(NUM_PALETTES)]
        return [
            TextureClass(
                angle=float(rng.uniform(0, np.pi)),
                concentration=float(rng.choice([0.0, 1.0, 3.0, 6.0])),
                frequency=float(np.exp(rng.uniform(np.log(2.0), np.log(10.0)))),
                bandwidth=float(rng.uniform(0.25, 0.6)),
                beta=float(rng.uniform(1.0, 2.5)),
                background=float(rng.uniform(0.0, 0.7)),
                nonlinearity=int(rng.integers(len(NONLINEARITIES))),
                gain=float(rng.uniform(1.0, 3.0)),
                palette=palettes[int(rng.integers(NUM_PALETTES))],
            )
            for _ in range(num_classes)
        ]

    def render_class(self, params: TextureClass, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        big = size  # the band-limited field needs no supersampling
        fy = np.fft.fftfreq(big)[:, None] * big
        fx = np.fft.fftfreq(big)[None, :] * big
        radius = np.sqrt(fx**2 + fy**2)
        radius[0, 0] = 1.0
        phi = np.arctan2(fy, fx)
        angle = params.angle + rng.normal(0, np.deg2rad(20), size=(count, 1, 1))
        frequency = params.frequency * np.exp(rng.normal(0, 0.2, size=(count, 1, 1)))
        band = np.exp(-(np.log(radius / frequency) ** 2) / (2 * params.bandwidth**2))
        orient = np.exp(params.concentration * (np.cos(2 * (phi - angle)) - 1))
        background = radius ** (-params.beta)
        background /= np.sqrt((background**2).mean())
        spectrum = band * orient
        spectrum /= np.sqrt((spectrum**2).mean(axis=(1, 2), keepdims=True)) + 1e-8
        spectrum = (1 - params.background) * spectrum + params.background * background
        spectrum[:, 0, 0] = 0.0
        noise = rng.normal(size=(count, big, big)) + 1j * rng.normal(size=(count, big, big))
        field = np.fft.ifft2(noise * spectrum).real
        field = (field - field.mean(axis=(1, 2), keepdims=True)) / (field.std(axis=(1, 2), keepdims=True) + 1e-8)
        kind = NONLINEARITIES[params.nonlinearity]
        gain = params.gain * np.exp(rng.normal(0, 0.3, size=(count, 1, 1)))
        if kind == "smooth":
            t = 1 / (1 + np.exp(-gain * field))
        elif kind == "ridges":
            t = np.exp(-gain * np.abs(field))
        elif kind == "blobs":
            t = 1 / (1 + np.exp(-4 * gain * (field - 0.5)))
        else:
            t = 0.5 + 0.5 * np.sin(gain * 2 * field)
        palette = np.asarray(params.palette)  # (3, 3)
        hue_jitter = rng.normal(0, 0.04, size=(count,))
        colours = np.empty((count, 3, 3))
        for i in range(count):
            for k in range(3):
                h, s, v = colorsys.rgb_to_hsv(*palette[k])
                colours[i, k] = colorsys.hsv_to_rgb((h + hue_jitter[i]) % 1.0, s, v)
        t = t[..., None]
        image = (1 - t) ** 2 * colours[:, None, None, 0] + 2 * t * (1 - t) * colours[:, None, None, 1]
        image = image + t**2 * colours[:, None, None, 2]
        # slow illumination gradient and contrast jitter, then sensor noise
        yy, xx = np.mgrid[0:big, 0:big] / big - 0.5
        tilt = rng.normal(0, 0.4, size=(count, 2))
        light = 1 + tilt[:, 0, None, None] * yy + tilt[:, 1, None, None] * xx
        contrast = np.exp(rng.normal(0, 0.25, size=(count, 1, 1, 1)))
        mean = image.mean(axis=(1, 2), keepdims=True)
        image = (mean + contrast * (image - mean)) * light[..., None]
        image = image + rng.normal(0, 0.04, size=(count, size, size, 3))
        return to_uint8(image)

    def describe(self) -> dict:
        return {"nonlinearities": list(NONLINEARITIES)}


SPEC = SyntheticTextures()
