"""Tiny-ImageNet-200 (CS231N): 200 ImageNet classes, 64x64 (or a 32x32 copy).

Source: ``tiny-imagenet-200.zip`` (official, MD5-verified) or any
``tiny-imagenet-*.zip`` / extracted ``tiny-imagenet-200/`` folder with the
official layout ``train/<wnid>/images/*.JPEG`` (32x32 copies in that layout work
too). Only the labelled training
images are used. Classes (wnids) are split 70 / 15 / 15 % (140 / 30 / 30)
with the split seed, sorted.

Tiny-ImageNet shares classes with mini-ImageNet. When both are in one mixture,
:func:`kml.data.get_tasksets` drops the shared wnids from Tiny-ImageNet (every
split), so no class is seen by both modes.
"""

from __future__ import annotations

from kml.data.datasets.base import ClassListing, DatasetSpec, group_by_class, listing_from_split
from kml.data.download import RemoteFile
from kml.data.errors import DataError
from kml.data.sources import SourceTree
from kml.data.splits import seeded_class_split

_IMAGE = r"(?:.*/)?train/(n\d{8})/images/[^/]+\.(?:JPEG|jpeg|jpg|JPG|png)"


class TinyImageNet(DatasetSpec):
    name = "tinyimagenet"
    official_classes = 200
    official_images_per_class = 500
    title = "Tiny-ImageNet-200"
    remote_files = (
        RemoteFile(
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
            "tiny-imagenet-200.zip",
            "90528d7ca1a48142e341f4ef8d21d0de",
        ),
    )
    markers = ("tiny-imagenet-*.zip", "tiny-imagenet-200")
    archive_patterns = ("tiny-imagenet-*.zip",)
    source_help = "download tiny-imagenet-200.zip from cs231n.stanford.edu"

    def collect(self, tree: SourceTree, split: str, seed: int) -> ClassListing:
        classes = group_by_class(tree.match(_IMAGE))
        if not classes:
            raise DataError(
                "no tiny-imagenet-200/train/<wnid>/images/*.JPEG in the source; pass source=<tiny-imagenet-200.zip>"
            )
        words = {}
        hits = tree.match(r"(?:.*/)?words\.txt")
        if hits:
            for line in tree.read_text(hits[0].group(0)).splitlines():
                wnid, _, text = line.partition("\t")
                if wnid in classes:
                    words[wnid] = text.strip()
        listing = listing_from_split(classes, seeded_class_split(list(classes), seed))
        listing.extra["words"] = words
        return listing


SPEC = TinyImageNet()
