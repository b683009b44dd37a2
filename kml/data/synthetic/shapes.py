"""``synthetic_shapes``: fine-grained parametric "birds" in clutter (CUB-like).

Every class is a small composite creature built from the same parts: a body
(superellipse of a given squareness and aspect), a head, a beak, a tail (fan,
forked or long), a wing patch and a marking (none, wing stripes, body spots or
a breast patch), each part coloured from one small shared palette. A class is
one combination of these attributes plus slight continuous proportions, so
classes differ in a few details only, like bird species.

Each image shows one instance in a random pose (rotation, mirror, scale,
position) and lighting, on a random colour-gradient background cluttered with
distractor shapes in the same palette, some of them occluding the creature,
plus sensor noise; drawn at twice the size and area-averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from kml.data.synthetic.base import SyntheticSpec, smooth_resize, to_uint8

PALETTE = (
    (0.85, 0.15, 0.12),  # red
    (0.95, 0.75, 0.10),  # yellow
    (0.15, 0.35, 0.85),  # blue
    (0.10, 0.10, 0.10),  # black
    (0.92, 0.92, 0.88),  # white
    (0.50, 0.32, 0.18),  # brown
    (0.35, 0.62, 0.25),  # green
)
BODY_SHAPES = (1.4, 2.0, 3.5)  # superellipse exponents: pointed, oval, boxy
TAILS = ("fan", "forked", "long")
MARKINGS = ("none", "stripes", "spots", "breast")
_PALETTE = np.asarray(PALETTE)


@dataclass(frozen=True)
class CreatureClass:
    body_shape: int
    body: int  # palette indices ...
    wing: int
    head: int
    beak: int
    marking_colour: int
    tail: int
    marking: int
    aspect: float  # body length / height
    head_size: float
    wing_size: float


def _superellipse(rx: float, ry: float, exponent: float, points: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([rx * np.sign(c) * np.abs(c) ** (2 / exponent), ry * np.sign(s) * np.abs(s) ** (2 / exponent)], 1)


def _ellipse(cx: float, cy: float, rx: float, ry: float, points: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def creature_parts(c: CreatureClass) -> list[tuple[np.ndarray, int]]:
    """Polygons (unit coordinates, facing +x, y down) and palette colours, back to front."""
    ry = 0.17
    rx = ry * c.aspect
    parts: list[tuple[np.ndarray, int]] = []
    back = -rx * 0.85
    if TAILS[c.tail] == "fan":
        parts.append((np.array([[back + 0.02, 0.0], [back - 0.22, -0.12], [back - 0.22, 0.12]]), c.body))
    elif TAILS[c.tail] == "forked":
        parts.append((np.array([[back + 0.02, -0.02], [back - 0.24, -0.13], [back - 0.12, 0.0]]), c.body))
        parts.append((np.array([[back + 0.02, 0.02], [back - 0.24, 0.13], [back - 0.12, 0.0]]), c.body))
    else:
        tail = [[back + 0.02, -0.03], [back - 0.32, -0.015], [back - 0.32, 0.015], [back + 0.02, 0.03]]
        parts.append((np.array(tail), c.body))
    parts.append((_superellipse(rx, ry, BODY_SHAPES[c.body_shape]), c.body))
    if MARKINGS[c.marking] == "breast":
        parts.append((_ellipse(rx * 0.35, ry * 0.45, rx * 0.45, ry * 0.45), c.marking_colour))
    if MARKINGS[c.marking] == "spots":
        for sx, sy in ((-0.5, 0.35), (0.0, 0.5), (0.4, 0.3), (-0.2, -0.1)):
            parts.append((_ellipse(rx * sx, ry * sy, 0.028, 0.028, 10), c.marking_colour))
    wing_rx, wing_ry = rx * 0.6 * c.wing_size, ry * 0.55 * c.wing_size
    parts.append((_ellipse(-rx * 0.15, -ry * 0.1, wing_rx, wing_ry), c.wing))
    if MARKINGS[c.marking] == "stripes":
        for k in (-0.5, 0.0, 0.5):
            x = -rx * 0.15 + k * wing_rx
            parts.append((np.array([[x - 0.012, -wing_ry * 0.9], [x + 0.012, -wing_ry * 0.9],
                                    [x + 0.012, wing_ry * 0.9], [x - 0.012, wing_ry * 0.9]]) + [0, -ry * 0.1],
                          c.marking_colour))
    head_r = 0.1 * c.head_size
    hx, hy = rx * 0.85, -ry * 0.7
    beak = [[hx + head_r * 0.8, hy - 0.03], [hx + head_r + 0.1, hy + 0.005], [hx + head_r * 0.8, hy + 0.035]]
    parts.append((np.array(beak), c.beak))
    parts.append((_ellipse(hx, hy, head_r, head_r), c.head))
    eye = 3 if c.head != 3 else 4
    parts.append((_ellipse(hx + head_r * 0.35, hy - head_r * 0.2, 0.022, 0.022, 10), eye))
    return parts


class SyntheticShapes(SyntheticSpec):
    name = "synthetic_shapes"
    title = "synthetic fine-grained creatures in clutter"
    mode_id = 3
    num_classes = 300
    images_per_class = 20

    def class_params(self, rng: np.random.Generator, num_classes: int) -> list[CreatureClass]:
        seen: set[tuple] = set()
        out: list[CreatureClass] = []
        n = len(PALETTE)
        while len(out) < num_classes:
            key = (
                int(rng.integers(len(BODY_SHAPES))), int(rng.integers(n)), int(rng.integers(n)), int(rng.integers(n)),
                int(rng.choice([1, 3, 5])), int(rng.integers(n)), int(rng.integers(len(TAILS))),
                int(rng.integers(len(MARKINGS))),
            )  # fmt: skip
            if MARKINGS[key[7]] == "none":
                key = key[:5] + (0,) + key[6:]
            if key in seen or key[1] == key[2] == key[3]:
                continue
            seen.add(key)
            out.append(
                CreatureClass(
                    *key,
                    aspect=float(rng.uniform(1.3, 2.0)),
                    head_size=float(rng.uniform(0.8, 1.2)),
                    wing_size=float(rng.uniform(0.8, 1.2)),
                )
            )
        return out

    def render_class(self, params: CreatureClass, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        canvas = 2 * size
        parts = creature_parts(params)
        outline = np.concatenate([polygon for polygon, _ in parts])  # every part's points, (P, 2)
        bounds = np.cumsum([0] + [len(polygon) for polygon, _ in parts]).tolist()
        part_colours = _PALETTE[[colour for _, colour in parts]]  # (parts, 3)
        # per-image random choices, drawn in bulk
        yy, xx = np.mgrid[0:canvas, 0:canvas] / canvas
        c0, c1 = rng.uniform(0.2, 0.8, size=(2, count, 1, 1, 3))
        direction = rng.normal(size=(count, 2))
        dx, dy = direction[:, 0, None, None], direction[:, 1, None, None]
        ramp = (xx * dx + yy * dy - np.minimum(0, dx) - np.minimum(0, dy)) / (np.abs(dx) + np.abs(dy) + 1e-8)
        backgrounds = to_uint8(c0 + (c1 - c0) * ramp[..., None])
        angle = rng.uniform(-np.pi / 4, np.pi / 4, size=count)
        mirror = np.where(rng.uniform(size=count) < 0.5, -1.0, 1.0)
        scale = rng.uniform(0.6, 1.05, size=count) * canvas
        centre = canvas * (0.5 + rng.uniform(-0.12, 0.12, size=(count, 2)))
        light = rng.uniform(0.75, 1.2, size=(count, 1)) * rng.uniform(0.9, 1.1, size=(count, 3))
        big = np.empty((count, canvas, canvas, 3), dtype=np.uint8)
        for i in range(count):
            image = Image.fromarray(backgrounds[i])
            draw = ImageDraw.Draw(image)
            _clutter(draw, rng, canvas, int(rng.integers(8, 16)), small=False)
            cos, sin = np.cos(angle[i]), np.sin(angle[i])
            rotation = np.array([[cos, -sin], [sin, cos]])
            points = ((outline * [mirror[i], 1.0]) @ rotation.T * scale[i] + centre[i]).tolist()
            fills = (np.clip(part_colours * light[i], 0, 1) * 255).astype(int).tolist()
            for k, fill in enumerate(fills):
                draw.polygon([tuple(p) for p in points[bounds[k] : bounds[k + 1]]], fill=tuple(fill))
            _clutter(draw, rng, canvas, int(rng.integers(1, 4)), small=True)
            big[i] = np.asarray(image)
        images = smooth_resize(big.astype(np.float32) / 255.0, size)
        images += rng.normal(0, 0.04, size=images.shape).astype(np.float32)
        return to_uint8(images)

    def describe(self) -> dict:
        return {"palette": [list(c) for c in PALETTE], "tails": list(TAILS), "markings": list(MARKINGS)}


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, canvas: int, count: int, small: bool) -> None:
    """Draw ``count`` distractor shapes (ellipses, bars, triangles, lines), in the palette 60 % of the time."""
    in_palette = rng.uniform(size=count) < 0.6
    colours = np.where(in_palette[:, None], _PALETTE[rng.integers(len(PALETTE), size=count)],
                       rng.uniform(0, 1, size=(count, 3)))  # fmt: skip
    fills = (np.clip(colours * rng.uniform(0.7, 1.1, size=(count, 1)), 0, 1) * 255).astype(int).tolist()
    extents = (canvas * (rng.uniform(0.04, 0.1, size=count) if small else rng.uniform(0.05, 0.25, size=count))).tolist()
    centres = rng.uniform(0, canvas, size=(count, 2)).tolist()
    kinds = rng.integers(4, size=count).tolist()
    angles = rng.uniform(0, 2 * np.pi, size=(count, 3))
    corners = np.stack([np.cos(angles), np.sin(angles)], -1).tolist()  # (count, 3, 2)
    width = max(1, canvas // 40)
    for (x, y), extent, kind, fill, corner in zip(centres, extents, kinds, fills, corners):
        fill = tuple(fill)
        if kind == 0:
            draw.ellipse([x - extent, y - extent * 0.6, x + extent, y + extent * 0.6], fill=fill)
        elif kind == 1:
            draw.rectangle([x - extent, y - extent / 2, x + extent, y + extent / 2], fill=fill)
        elif kind == 2:
            draw.polygon([(x + extent * c, y + extent * s) for c, s in corner], fill=fill)
        else:
            (c, s) = corner[0]
            draw.line([x - extent * c, y - extent * s, x + extent * c, y + extent * s], fill=fill, width=width)


SPEC = SyntheticShapes()
