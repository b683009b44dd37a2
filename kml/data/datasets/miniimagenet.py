"""mini-ImageNet (Vinyals et al., 2016) with the Ravi & Larochelle class split.

Source: a folder holding ``images.zip`` (or the extracted ``images/`` folder)
and ``train.csv``, ``val.csv``, ``test.csv`` (header ``filename,label``). There
is no official download URL: the files are distributed by Ravi & Larochelle
("Optimization as a Model for Few-Shot Learning", ICLR 2017) and mirrored by
several few-shot repositories; download them yourself and pass
``source=<that folder>``.

Splits: the classes of each CSV (64 / 16 / 20 with the full files); images
of a class in CSV (file-name) order.
"""

from __future__ import annotations

import csv
import io

from kml.data.datasets.base import ClassListing, DatasetSpec
from kml.data.errors import DataError
from kml.data.sources import SourceTree


class MiniImageNet(DatasetSpec):
    name = "miniimagenet"
    official_classes = 100
    official_images_per_class = 600
    title = "mini-ImageNet"
    remote_files = ()
    markers = ("train.csv", "images.zip")
    archive_patterns = ("images.zip",)
    split_schemes = ("ravi",)
    default_split = "ravi"
    source_help = (
        "mini-ImageNet has no official download: get Ravi & Larochelle's images.zip (84x84 JPEGs) with "
        "train.csv, val.csv and test.csv (mirrored by few-shot learning repositories), put them in one folder "
        "and pass source=<that folder>"
    )

    def collect(self, tree: SourceTree, split: str, seed: int) -> ClassListing:
        images: dict[str, str] = {}
        for match in tree.match(r"(?:.*/)?([^/]+\.(?:jpg|jpeg|JPG|JPEG|png))"):
            images.setdefault(match.group(1), match.group(0))
        listing: dict[str, list[tuple[str, list[str]]]] = {}
        for part in ("train", "val", "test"):
            csv_path = tree.find_one(
                rf"(?:.*/)?{part}\.csv",
                f"mini-ImageNet {part}.csv",
                f"pass source=<folder with images.zip and {part}.csv>",
            )
            classes: dict[str, list[str]] = {}
            rows = csv.reader(io.StringIO(tree.read_text(csv_path)))
            header = next(rows, None)
            if header is None or [h.strip() for h in header[:2]] != ["filename", "label"]:
                raise DataError(
                    f"{csv_path} is not a Ravi split file (header must be 'filename,label'); use the original CSVs"
                )
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) < 2 or not row[1].strip():
                    raise DataError(
                        f"line {line} of {csv_path} has no label ({','.join(row)!r}); each row is 'filename,label': "
                        "use the original CSVs"
                    )
                filename, label = row[0].strip(), row[1].strip()
                if filename not in images:
                    raise DataError(
                        f"image {filename!r} listed in {csv_path} is missing from the source; "
                        "use the images.zip that matches these CSVs"
                    )
                classes.setdefault(label, []).append(images[filename])
            listing[part] = [(label, paths) for label, paths in sorted(classes.items())]
        seen: dict[str, str] = {}
        for part, classes_ in listing.items():
            for label, _ in classes_:
                if label in seen:
                    raise DataError(
                        f"mini-ImageNet class {label} is in both {seen[label]}.csv and {part}.csv; "
                        "use the original CSVs"
                    )
                seen[label] = part
        return ClassListing(listing)


SPEC = MiniImageNet()
