"""FGVC-Aircraft 2013b (Maji et al., 2013): 100 aircraft variants x 100 images.

Source: ``fgvc-aircraft-2013b.tar.gz`` (the file torchvision's
``FGVCAircraft`` downloads; MD5-verified) or its extracted folder. Classes are
the 100 variants of ``data/variants.txt``; images of every official subset
(``images_variant_{train,val,test}.txt``) are pooled and the variants split
70 / 15 / 15 with the split seed, sorted. Variants whose names contain '/'
(``F-16A/B``, ``F/A-18``) are kept (the reference code lost them). The 20-px
copyright banner at the bottom of every image is cropped before resizing.
"""

from __future__ import annotations

from kml.data.datasets.base import ClassListing, DatasetSpec, listing_from_split
from kml.data.download import RemoteFile
from kml.data.errors import DataError
from kml.data.sources import SourceTree
from kml.data.splits import seeded_class_split

BANNER_PIXELS = 20


class Aircraft(DatasetSpec):
    name = "aircraft"
    official_classes = 100
    official_images_per_class = 100
    title = "FGVC-Aircraft"
    remote_files = (
        RemoteFile(
            "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
            "fgvc-aircraft-2013b.tar.gz",
            "d4acdd33327262359767eeaa97a4f732",
        ),
    )
    markers = ("fgvc-aircraft-2013b.tar.gz", "fgvc-aircraft-2013b")
    archive_patterns = ("fgvc-aircraft-2013b.tar.gz",)
    crop_bottom = BANNER_PIXELS
    source_help = "download fgvc-aircraft-2013b.tar.gz from www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft"

    def collect(self, tree: SourceTree, split: str, seed: int) -> ClassListing:
        fix = "pass source=<fgvc-aircraft-2013b.tar.gz or the folder it was extracted to>"
        variants_path = tree.find_one(r"(?:.*/)?data/variants\.txt", "FGVC-Aircraft data/variants.txt", fix)
        data_dir = variants_path[: -len("variants.txt")]
        variants = [line.strip() for line in tree.read_text(variants_path).splitlines() if line.strip()]
        classes: dict[str, list[str]] = {name: [] for name in variants}
        wanted = {f"{data_dir}images_variant_{part}.txt" for part in ("train", "val", "test")}
        lists = sorted(p for p in tree.files() if p in wanted)
        if not lists:
            raise DataError(f"no data/images_variant_*.txt in the FGVC-Aircraft source; {fix}")
        seen: set[str] = set()
        for list_path in lists:
            for line in tree.read_text(list_path).splitlines():
                if not line.strip():
                    continue
                image_id, _, variant = line.strip().partition(" ")
                if variant not in classes:
                    raise DataError(f"variant {variant!r} of {list_path} is not in variants.txt; {fix}")
                if image_id in seen:
                    continue
                seen.add(image_id)
                path = f"{data_dir}images/{image_id}.jpg"
                if path not in tree:
                    raise DataError(f"image {path!r} listed in {list_path} is missing from the source; {fix}")
                classes[variant].append(path)
        classes = {name: sorted(paths) for name, paths in classes.items()}
        return listing_from_split(classes, seeded_class_split(variants, seed))


SPEC = Aircraft()
