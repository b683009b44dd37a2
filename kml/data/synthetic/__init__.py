"""Embedded synthetic modes: no download, deterministic from a seed, cached.

* ``synthetic_glyphs``: Omniglot-like letters of many scripts rendered from
  the fonts bundled with matplotlib (:mod:`.glyphs`);
* ``synthetic_textures``: procedural colour textures (:mod:`.textures`);
* ``synthetic_shapes``: fine-grained parametric creatures in clutter
  (:mod:`.shapes`).

Each has 300 classes (210 / 45 / 45 train / val / test) of 20 images. The
name ``synthetic`` means the mixture of all three. They are generated on
first use at the requested image size and cached under ``data.root`` like a
prepared dataset (see :func:`kml.data.prepare.ensure_prepared`).
"""

from kml.data.synthetic.base import SyntheticSpec
from kml.data.synthetic.glyphs import SPEC as GLYPHS
from kml.data.synthetic.shapes import SPEC as SHAPES
from kml.data.synthetic.textures import SPEC as TEXTURES

SYNTHETIC_SPECS: dict[str, SyntheticSpec] = {spec.name: spec for spec in (GLYPHS, TEXTURES, SHAPES)}
SYNTHETIC_MIXTURE: tuple[str, ...] = tuple(SYNTHETIC_SPECS)

__all__ = ["SYNTHETIC_MIXTURE", "SYNTHETIC_SPECS", "SyntheticSpec"]
