"""GTSRB (Stallkamp et al., 2011): German traffic signs, 43 classes.

Source: the official ``GTSRB_Final_Training_Images.zip`` (MD5-verified) or its
extracted ``GTSRB/`` folder (``GTSRB/Final_Training/Images/000NN/*.ppm``).
Whole images are used (no region-of-interest crop), resized to the image size.

Splits (as Meta-Dataset's traffic signs, which it uses for testing only):

* ``seeded`` (default): 70 / 15 / 15 % of the 43 classes (30 / 6 / 7) with the
  split seed, sorted;
* ``test_only``: all 43 classes in test, train and val empty.
"""

from __future__ import annotations

from kml.data.datasets.base import ClassListing, DatasetSpec, group_by_class, listing_from_split
from kml.data.download import RemoteFile
from kml.data.errors import DataError
from kml.data.sources import SourceTree
from kml.data.splits import seeded_class_split

_IMAGE = r"(?:.*/)?GTSRB/Final_Training/Images/(\d{5})/[^/]+\.ppm"


class GTSRB(DatasetSpec):
    name = "gtsrb"
    official_classes = 43
    official_images_per_class = None
    title = "GTSRB (traffic signs)"
    remote_files = (
        RemoteFile(
            "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/GTSRB_Final_Training_Images.zip",
            "GTSRB_Final_Training_Images.zip",
            "f33fd80ac59bff73c82d25ab499e03a3",
        ),
    )
    markers = ("GTSRB_Final_Training_Images.zip", "GTSRB")
    archive_patterns = ("GTSRB_Final_Training_Images.zip",)
    split_schemes = ("seeded", "test_only")
    default_split = "seeded"
    source_help = "download GTSRB_Final_Training_Images.zip from benchmark.ini.rub.de (GTSRB)"

    def collect(self, tree: SourceTree, split: str, seed: int) -> ClassListing:
        classes = group_by_class(tree.match(_IMAGE))
        if not classes:
            raise DataError(
                "no GTSRB/Final_Training/Images/000NN/*.ppm in the source; "
                "pass source=<GTSRB_Final_Training_Images.zip>"
            )
        if split == "test_only":
            parts = {"train": [], "val": [], "test": sorted(classes)}
        else:
            parts = seeded_class_split(list(classes), seed)
        return listing_from_split(classes, parts)

    def allow_empty_splits(self, split: str) -> tuple[str, ...]:
        return ("train", "val") if split == "test_only" else ()


SPEC = GTSRB()
