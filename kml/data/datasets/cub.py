"""CUB-200-2011 (Wah et al., 2011): 200 bird species.

Source: ``CUB_200_2011.tgz`` (official CaltechDATA archive, MD5-verified) or
its extracted ``CUB_200_2011/`` folder. Classes are the folders of
``CUB_200_2011/images/`` (``001.Black_footed_Albatross``, ...), split 70 / 15 /
15 % of the classes (140 / 30 / 30 for the full set) with the split seed,
sorted. Images are resized to the image size ignoring the aspect ratio;
grayscale photos become 3 equal channels. Boxes and parts are not used.
"""

from __future__ import annotations

from kml.data.datasets.base import ClassListing, DatasetSpec, group_by_class, listing_from_split
from kml.data.download import RemoteFile
from kml.data.errors import DataError
from kml.data.sources import SourceTree
from kml.data.splits import seeded_class_split

_IMAGE = r"(?:.*/)?CUB_200_2011/images/([^/]+)/[^/]+\.(?:jpg|jpeg|JPG|JPEG|png)"


class CUB(DatasetSpec):
    name = "cub"
    official_classes = 200
    official_images_per_class = None
    title = "CUB-200-2011"
    remote_files = (
        RemoteFile(
            "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
            "CUB_200_2011.tgz",
            "97eceeb196236b17998738112f37df78",
        ),
    )
    markers = ("CUB_200_2011.tgz", "CUB_200_2011")
    archive_patterns = ("CUB_200_2011.tgz",)
    source_help = "download CUB_200_2011.tgz from www.vision.caltech.edu/datasets/cub_200_2011"

    def collect(self, tree: SourceTree, split: str, seed: int) -> ClassListing:
        classes = group_by_class(tree.match(_IMAGE))
        if not classes:
            raise DataError("no CUB_200_2011/images/<class>/*.jpg in the source; pass source=<CUB_200_2011.tgz>")
        return listing_from_split(classes, seeded_class_split(list(classes), seed))


SPEC = CUB()
