"""Omniglot (Lake et al., 2015): 1,623 handwritten characters x 20 drawers.

Source: brendenlake's ``images_background.zip`` and ``images_evaluation.zip``
(the files torchvision's ``Omniglot`` downloads, same URLs and MD5s), or the
folder they were extracted to (``omniglot-py/images_background/...``).

Classes are characters (``<Alphabet>/characterNN``). Images are grayscale,
resized to the image size, inverted so strokes are 255 (1.0 after scaling)
and background 0, stored with one channel. Rotations by k*90 degrees are not
separate classes: the sampler rotates each class of each task by a random
k*90 degrees (support and query alike), as MMAML does.

Splits:

* ``vinyals`` (default): by alphabet, the standard split the MMAML paper
  counts: 1028 / 172 / 423 characters (x4 rotations = 4112 / 688 / 1692);
  Gurmukhi characters 1-41 are train, 42-45 test.
* ``lake``: background alphabets -> train and val (5 val alphabets chosen with
  the split seed), evaluation alphabets -> test (964 / 659 characters).
"""

from __future__ import annotations

import numpy as np

from kml.data.datasets.base import ClassListing, DatasetSpec
from kml.data.download import RemoteFile
from kml.data.errors import DataError
from kml.data.sources import SourceTree

_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"

VINYALS_TRAIN = (
    "Alphabet_of_the_Magi", "Angelic", "Anglo-Saxon_Futhorc", "Arcadian", "Asomtavruli_(Georgian)",
    "Atemayar_Qelisayer", "Atlantean", "Aurek-Besh", "Avesta", "Balinese",
    "Blackfoot_(Canadian_Aboriginal_Syllabics)", "Braille", "Burmese_(Myanmar)", "Cyrillic", "Futurama",
    "Ge_ez", "Glagolitic", "Grantha", "Greek", "Gujarati", "Gurmukhi",
    "Inuktitut_(Canadian_Aboriginal_Syllabics)", "Japanese_(hiragana)", "Japanese_(katakana)", "Korean",
    "Latin", "Malay_(Jawi_-_Arabic)", "N_Ko", "Ojibwe_(Canadian_Aboriginal_Syllabics)", "Sanskrit",
    "Syriac_(Estrangelo)", "Tagalog", "Tifinagh",
)  # fmt: skip
VINYALS_VAL = ("Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)")
VINYALS_TEST = (
    "Gurmukhi", "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)",
    "Oriya", "Sylheti", "Syriac_(Serto)", "Tengwar", "Tibetan", "ULOG",
)  # fmt: skip
GURMUKHI_LAST_TRAIN = 41  # Gurmukhi character01-41 train, character42-45 test
LAKE_VAL_ALPHABETS = 5

_IMAGE = r"(?:.*/)?(images_background|images_evaluation)/([^/]+)/(character\d+)/[^/]+\.png"


def vinyals_split_of(alphabet: str, character: str) -> str:
    """The ``vinyals`` split of one character (``character`` like ``character07``)."""
    if alphabet == "Gurmukhi":
        return "train" if int(character[len("character") :]) <= GURMUKHI_LAST_TRAIN else "test"
    if alphabet in VINYALS_TRAIN:
        return "train"
    if alphabet in VINYALS_VAL:
        return "val"
    if alphabet in VINYALS_TEST:
        return "test"
    raise DataError(
        f"Omniglot alphabet {alphabet!r} is not in the Vinyals split; use the official images_background.zip "
        "and images_evaluation.zip, or split=lake"
    )


class Omniglot(DatasetSpec):
    name = "omniglot"
    official_classes = 1623
    official_images_per_class = 20
    title = "Omniglot"
    remote_files = (
        RemoteFile(_URL + "images_background.zip", "images_background.zip", "68d2efa1b9178cc56df9314c21c6e718"),
        RemoteFile(_URL + "images_evaluation.zip", "images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811"),
    )
    markers = ("images_background.zip", "images_evaluation.zip", "images_background", "omniglot-py")
    archive_patterns = ("images_background.zip", "images_evaluation.zip")
    split_schemes = ("vinyals", "lake")
    default_split = "vinyals"
    grayscale = True
    invert = True
    polarity = "light_on_dark"
    rotations = True
    source_help = "download images_background.zip and images_evaluation.zip from github.com/brendenlake/omniglot"

    def collect(self, tree: SourceTree, split: str, seed: int) -> ClassListing:
        characters: dict[tuple[str, str, str], dict[str, str]] = {}
        for match in tree.match(_IMAGE):
            files = characters.setdefault((match.group(1), match.group(2), match.group(3)), {})
            files.setdefault(match.group(0).rsplit("/", 1)[-1], match.group(0))  # an archive and its extracted copy
        halves = {half for half, _, _ in characters}
        for half in ("images_background", "images_evaluation"):
            if half not in halves:
                raise DataError(
                    f"the Omniglot source has no {half} images; pass source=<folder holding both "
                    "images_background.zip and images_evaluation.zip (or their extracted folders)>"
                )
        by_split: dict[str, list[tuple[str, list[str]]]] = {"train": [], "val": [], "test": []}
        alphabets: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
        if split == "lake":
            background = sorted({a for half, a, _ in characters if half == "images_background"})
            order = np.random.default_rng(seed).permutation(len(background))
            val_alphabets = {background[i] for i in order[:LAKE_VAL_ALPHABETS]}
        for (half, alphabet, character), files in sorted(characters.items(), key=lambda kv: kv[0][1:]):
            paths = [files[name] for name in sorted(files)]
            if split == "vinyals":
                part = vinyals_split_of(alphabet, character)
            elif half == "images_evaluation":
                part = "test"
            else:
                part = "val" if alphabet in val_alphabets else "train"
            by_split[part].append((f"{alphabet}/{character}", sorted(paths)))
            alphabets[part].add(alphabet)
        return ClassListing(by_split, extra={"alphabets": {k: sorted(v) for k, v in alphabets.items()}})


SPEC = Omniglot()
