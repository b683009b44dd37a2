"""Fixtures of the ``kml.data`` tests.

* ``data_shared_dir`` / ``data_shared_root``: the real dataset subsets named by
  ``$KML_SHARED_DATA`` (skipped when absent) and a root with them prepared once
  per session;
* ``data_synthetic_root``: a root with the synthetic modes generated once per
  session;
* ``data_builders``: builders of tiny archives in each dataset's official
  format (same file names, folder layout and metadata files as the official
  downloads, a few classes of a few small images each), so every reader is
  tested without any real data. Their pixels are chosen so that a decoding bug
  (channel order, inversion, wrong image order) changes them.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

#: image size of the shared real subsets prepared once per test session
DATA_SHARED_SIZE = 28
#: image size of the synthetic modes generated once per test session
DATA_SYNTHETIC_SIZE = 16
#: folder of each dataset inside the shared data folder
DATA_SHARED_FOLDERS = {
    "omniglot": "omniglot",
    "miniimagenet": "miniimagenet",
    "cub": "cub",
    "gtsrb": "gtsrb",
    "tinyimagenet": "tinyimagenet32",
}


# ============================================================================
# real data and session-wide prepared roots
# ============================================================================
def data_shared_location() -> Path:
    """``$KML_SHARED_DATA``, else the ``shared/data`` folder next to the repository."""
    env = os.environ.get("KML_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_shared_dir() -> Path:
    """The real dataset subsets (skip if absent; fail if KML_REQUIRE_SHARED_DATA=1)."""
    path = data_shared_location()
    missing = [name for name, folder in DATA_SHARED_FOLDERS.items() if not (path / folder).is_dir()]
    if missing:
        message = (
            f"shared real data not found at {path} (missing {', '.join(missing)}); "
            "set KML_SHARED_DATA=<folder holding omniglot/, miniimagenet/, cub/, gtsrb/, tinyimagenet32/>"
        )
        if os.environ.get("KML_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message + " (KML_REQUIRE_SHARED_DATA=1 makes this a failure)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_shared_root(tmp_path_factory, data_shared_dir) -> Path:
    """A data root with the five shared subsets prepared at DATA_SHARED_SIZE (once per session).

    Preparation seconds per dataset are stored in ``<root>/timings.txt``.
    """
    from kml.data import prepare_dataset

    root = tmp_path_factory.mktemp("data-shared")
    lines = []
    for name, folder in DATA_SHARED_FOLDERS.items():
        start = time.perf_counter()
        prepare_dataset(name, root, DATA_SHARED_SIZE, source=data_shared_dir / folder, verbose=False)
        lines.append(f"{name} {time.perf_counter() - start:.2f}")
    (root / "timings.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def data_synthetic_root(tmp_path_factory) -> Path:
    """A data root with the three synthetic modes generated at DATA_SYNTHETIC_SIZE (once per session)."""
    from kml.data import SYNTHETIC_MIXTURE, prepare_dataset

    root = tmp_path_factory.mktemp("data-synthetic")
    for name in SYNTHETIC_MIXTURE:
        prepare_dataset(name, root, DATA_SYNTHETIC_SIZE, verbose=False)
    return root


# ============================================================================
# image and archive helpers
# ============================================================================
def _encode(image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def data_png(array) -> bytes:
    """PNG bytes of a uint8 (H, W[, 3]) array, or of a bool (H, W) array as a 1-bit PNG."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != bool:
        array = array.astype(np.uint8)
    return _encode(Image.fromarray(array), "PNG")


def data_jpeg(array, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) or (H, W) array."""
    from PIL import Image

    return _encode(Image.fromarray(np.asarray(array, dtype=np.uint8)), "JPEG", quality=quality)


def data_ppm(array) -> bytes:
    """Binary PPM (P6) bytes of a uint8 (H, W, 3) array."""
    from PIL import Image

    return _encode(Image.fromarray(np.asarray(array, dtype=np.uint8), "RGB"), "PPM")


def data_add_tar_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(payload))


def data_add_tar_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def data_constant(height: int, width: int, colour) -> np.ndarray:
    """A uint8 (height, width, 3) image of one colour."""
    return np.broadcast_to(np.asarray(colour, dtype=np.uint8), (height, width, 3)).copy()


def _parents(path: str) -> list[str]:
    """The folder entries ``a/``, ``a/b/`` above ``a/b/c.png``."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


class _Zip:
    """A zip written like the official ones: folder entries first, then files, in sorted order."""

    def __init__(self):
        self.members: dict[str, bytes] = {}

    def add(self, name: str, payload: bytes | str) -> None:
        self.members[name] = payload.encode() if isinstance(payload, str) else payload

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries: dict[str, bytes | None] = {}
        for name in self.members:
            for folder in _parents(name):
                entries[folder] = None
        entries.update(self.members)
        with zipfile.ZipFile(path, "w") as zf:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                if entries[name] is None:
                    info.external_attr = (0o40755 << 16) | 0x10
                    zf.writestr(info, b"")
                else:
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, entries[name])
        return path

    def extract(self, folder: Path) -> Path:
        """Write the members as plain files under ``folder`` (an extracted copy)."""
        for name, payload in self.members.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
        return folder


# ============================================================================
# FC100: cifar-100-python.tar.gz
# ============================================================================
def data_build_cifar100(folder: Path, per_class: tuple[int, int] = (2, 1)) -> Path:
    """A tiny ``cifar-100-python.tar.gz`` in the official format.

    100 fine classes (fine ``f`` in superclass ``f // 5``), ``per_class`` = (train,
    test) images each; image pixels are constant: red = fine label, green = index
    within the class, blue = 200 (to check that no colour inversion happens).
    """
    folder.mkdir(parents=True, exist_ok=True)
    fine_names = [f"fine{f:02d}" for f in range(100)]
    coarse_names = [f"coarse{c:02d}" for c in range(20)]
    batches = {}
    for part, count in zip(("train", "test"), per_class):
        data, fine, coarse = [], [], []
        for f in range(100):
            for k in range(count):
                offset = 0 if part == "train" else per_class[0]
                image = np.zeros((3, 32, 32), dtype=np.uint8)
                image[0], image[1], image[2] = f, offset + k, 200
                data.append(image.reshape(-1))
                fine.append(f)
                coarse.append(f // 5)
        batches[part] = {
            b"filenames": [f"{part}_{i}.png".encode() for i in range(len(fine))],
            b"batch_label": f"{part} batch".encode(),
            b"fine_labels": fine,
            b"coarse_labels": coarse,
            b"data": np.stack(data),
        }
    meta = {"fine_label_names": fine_names, "coarse_label_names": coarse_names}
    path = folder / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for part, batch in batches.items():
            data_add_tar_bytes(tar, f"cifar-100-python/{part}", pickle.dumps(batch, protocol=2))
        data_add_tar_bytes(tar, "cifar-100-python/meta", pickle.dumps(meta, protocol=2))
    return path


# ============================================================================
# FGVC-Aircraft: fgvc-aircraft-2013b.tar.gz
# ============================================================================
#: FGVC-Aircraft variant names of the tiny archive: 100, including names with '/'
DATA_AIRCRAFT_VARIANTS = ["F-16A/B", "F/A-18", "Cessna 172", "DC-3"] + [f"Variant-{i:03d}" for i in range(96)]


def data_build_aircraft(folder: Path, per_class: int = 2, corrupt: str | None = None) -> Path:
    """A tiny ``fgvc-aircraft-2013b.tar.gz`` in the official layout.

    Images are 60x40 with a 20-px magenta banner at the bottom; the picture
    above it is a constant grey. ``corrupt`` names an image id whose bytes are
    garbage.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fgvc-aircraft-2013b.tar.gz"
    lists = {"train": [], "val": [], "test": []}
    images = {}
    for v, variant in enumerate(DATA_AIRCRAFT_VARIANTS):
        for k in range(per_class):
            image_id = f"{1000000 + v * 10 + k:07d}"
            pixels = np.full((60, 40, 3), 90 + (v % 50), dtype=np.uint8)
            pixels[-20:] = (255, 0, 255)
            # PNG bytes under the official .jpg name: lossless, so the crop is checked exactly
            images[image_id] = b"not a jpeg" if image_id == corrupt else data_png(pixels)
            lists[("train", "val", "test")[k % 3]].append(f"{image_id} {variant}")
    with tarfile.open(path, "w:gz") as tar:
        root = "fgvc-aircraft-2013b/data/"
        data_add_tar_bytes(tar, root + "variants.txt", ("\n".join(DATA_AIRCRAFT_VARIANTS) + "\n").encode())
        for part, rows in lists.items():
            data_add_tar_bytes(tar, root + f"images_variant_{part}.txt", ("\n".join(rows) + "\n").encode())
        for image_id, payload in images.items():
            data_add_tar_bytes(tar, root + f"images/{image_id}.jpg", payload)
    return path


# ============================================================================
# Tiny-ImageNet: tiny-imagenet-200.zip (64x64) or a 32x32 copy in the same layout
# ============================================================================
def data_build_tinyimagenet(
    folder: Path,
    classes: int = 10,
    per_class: int = 3,
    image_size: int = 64,
    filename: str = "tiny-imagenet-200.zip",
    wnids: list[str] | None = None,
    official_extras: bool = True,
) -> Path:
    """A tiny Tiny-ImageNet zip in the official ``tiny-imagenet-200/`` layout.

    Training image ``k`` (< 3) of class ``c`` (< 25) is a constant JPEG of grey level
    ``10 * c + 3 * k``. ``official_extras`` adds what the official archive has besides
    the training images (``<wnid>_boxes.txt``, ``val/`` with its annotations,
    ``test/``); the 32x32 re-encoded copies leave them out.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    wnids = list(wnids) if wnids is not None else [f"n{10000000 + c:08d}" for c in range(classes)]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        zf.writestr("tiny-imagenet-200/words.txt", "\n".join(f"{w}\tthing {i}" for i, w in enumerate(wnids)) + "\n")
        for c, wnid in enumerate(wnids):
            for k in range(per_class):
                pixels = np.full((image_size, image_size, 3), 10 * c + 3 * k, dtype=np.uint8)
                zf.writestr(f"tiny-imagenet-200/train/{wnid}/images/{wnid}_{k}.JPEG", data_jpeg(pixels))
            if official_extras:
                zf.writestr(f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt", "")
        if official_extras:
            rows = []
            for i, wnid in enumerate(wnids):
                zf.writestr(f"tiny-imagenet-200/val/images/val_{i}.JPEG", data_jpeg(np.full((64, 64, 3), 250)))
                rows.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
            zf.writestr("tiny-imagenet-200/val/val_annotations.txt", "\n".join(rows) + "\n")
            zf.writestr("tiny-imagenet-200/test/images/test_0.JPEG", data_jpeg(np.full((64, 64, 3), 250)))
    return path


# ============================================================================
# Omniglot: images_background.zip + images_evaluation.zip
# ============================================================================
#: alphabets of the tiny Omniglot zips and their ``characterNN`` numbers, by zip. Each is in the
#: same zip as in the official files. ``vinyals`` split: train Latin, Greek, Korean, Tifinagh,
#: Angelic and Gurmukhi 01/41; val Armenian, Bengali; test Gurmukhi 42/45, Kannada, Tibetan.
DATA_OMNIGLOT_ALPHABETS = {
    "images_background": {
        "Latin": (1, 2),
        "Greek": (1, 2),
        "Korean": (1, 2),
        "Tifinagh": (1, 2),
        "Armenian": (1, 2),
        "Bengali": (1, 2),
    },
    "images_evaluation": {
        "Angelic": (1, 2),
        "Gurmukhi": (1, 41, 42, 45),
        "Kannada": (1, 2),
        "Tibetan": (1,),
    },
}
#: drawers (images) per character in the tiny zips (20 in the official ones)
DATA_OMNIGLOT_DRAWERS = 3
#: side of the Omniglot images, as in the official zips
DATA_OMNIGLOT_SIZE = 105


def data_omniglot_strokes(character: str, drawer: int) -> np.ndarray:
    """bool (105, 105) ink of ``<Alphabet>/characterNN`` by drawer 1, 2, ... (True = ink).

    Three 8-px-wide straight strokes at places drawn from the names, at least 12 px
    from the border (as the official characters, which leave a blank margin).
    """
    rng = np.random.default_rng(zlib.crc32(f"{character}/{drawer}".encode()))
    ink = np.zeros((DATA_OMNIGLOT_SIZE, DATA_OMNIGLOT_SIZE), dtype=bool)
    for _ in range(3):
        start, length, across = rng.integers(12, 40), rng.integers(30, 54), rng.integers(12, 86)
        if rng.random() < 0.5:
            ink[across : across + 8, start : start + length] = True
        else:
            ink[start : start + length, across : across + 8] = True
    return ink


def data_build_omniglot(folder: Path, torchvision_layout: bool = False) -> Path:
    """Tiny ``images_background.zip`` and ``images_evaluation.zip`` in ``folder``; returns ``folder``.

    Layout as brendenlake's zips: ``images_background/<Alphabet>/characterNN/<id>_<drawer>.png``,
    1-bit 105x105 PNGs, white background and black strokes (see
    :func:`data_omniglot_strokes`), character ids counted from 0001 in the background
    zip and from 0965 in the evaluation zip. With ``torchvision_layout`` the zips and
    their extracted folders are in ``folder/omniglot-py/``, as torchvision's
    ``Omniglot(root=folder)`` leaves them.
    """
    target = folder / "omniglot-py" if torchvision_layout else folder
    for half, first_id in (("images_background", 1), ("images_evaluation", 965)):
        archive = _Zip()
        char_id = first_id
        for alphabet, numbers in DATA_OMNIGLOT_ALPHABETS[half].items():
            for number in numbers:
                character = f"character{number:02d}"
                for drawer in range(1, DATA_OMNIGLOT_DRAWERS + 1):
                    ink = data_omniglot_strokes(f"{alphabet}/{character}", drawer)
                    archive.add(f"{half}/{alphabet}/{character}/{char_id:04d}_{drawer:02d}.png", data_png(~ink))
                char_id += 1
        archive.write(target / f"{half}.zip")
        if torchvision_layout:
            archive.extract(target)
    return folder


# ============================================================================
# mini-ImageNet: images.zip + train.csv, val.csv, test.csv (Ravi & Larochelle)
# ============================================================================
#: wnids of the tiny mini-ImageNet, by Ravi split
DATA_MINIIMAGENET_WNIDS = {
    "train": ["n01532829", "n01558993", "n01704323", "n01749939"],
    "val": ["n01855672", "n02091244"],
    "test": ["n01930112", "n01981276"],
}


def data_miniimagenet_index(c: int, k: int) -> int:
    """The ImageNet index in the file name of image ``k`` of class ``c`` (not contiguous, as in the CSVs)."""
    return 3 * k + c % 3 + 1


def data_miniimagenet_colour(c: int, k: int) -> tuple[int, int, int]:
    """The constant colour of image ``k`` of the ``c``-th class (all splits, in order)."""
    return 20 + 25 * c, 30 + 60 * k, 230 - 25 * c


def data_build_miniimagenet(
    folder: Path, per_class: int = 3, wnids: dict[str, list[str]] | None = None, extracted: bool = False
) -> Path:
    """A tiny mini-ImageNet in Ravi & Larochelle's files, in ``folder``; returns ``folder``.

    ``images.zip`` holds the flat folder ``images/<wnid><8-digit index>.jpg`` (84x84
    JPEGs of :func:`data_miniimagenet_colour`); ``train.csv``, ``val.csv``,
    ``test.csv`` have the header ``filename,label`` and one row per image, sorted by
    file name. ``extracted`` writes the ``images/`` folder instead of the zip.
    """
    wnids = wnids or DATA_MINIIMAGENET_WNIDS
    archive = _Zip()
    c = 0
    for split in ("train", "val", "test"):
        rows = []
        for wnid in wnids[split]:
            for k in range(per_class):
                filename = f"{wnid}{data_miniimagenet_index(c, k):08d}.jpg"
                archive.add(f"images/{filename}", data_jpeg(data_constant(84, 84, data_miniimagenet_colour(c, k))))
                rows.append(f"{filename},{wnid}")
            c += 1
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{split}.csv").write_text("filename,label\n" + "\n".join(sorted(rows)) + "\n")
    if extracted:
        archive.extract(folder)
    else:
        archive.write(folder / "images.zip")
    return folder


# ============================================================================
# CUB-200-2011: CUB_200_2011.tgz
# ============================================================================
#: species folders of the tiny CUB (the first 12 official class folders)
DATA_CUB_CLASSES = [
    "001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani",
    "005.Crested_Auklet", "006.Least_Auklet", "007.Parakeet_Auklet", "008.Rhinoceros_Auklet",
    "009.Brewer_Blackbird", "010.Red_winged_Blackbird", "011.Rusty_Blackbird", "012.Yellow_headed_Blackbird",
]  # fmt: skip


def data_cub_count(c: int) -> int:
    """Images of the ``c``-th tiny CUB class (2 or 3)."""
    return 2 + c % 2


def data_cub_colour(c: int, k: int) -> tuple[int, int, int]:
    """Constant colour of image ``k`` of the ``c``-th class; image 0 of class 0 is a grayscale JPEG of 128."""
    return 15 + 20 * c, 40 + 70 * k, 240 - 15 * c


def data_build_cub(folder: Path) -> Path:
    """A tiny ``CUB_200_2011.tgz`` in the official layout; returns the archive.

    ``CUB_200_2011/images/<NNN.Species>/<Species>_<NNNN>_<id>.jpg`` (40x30 JPEGs of
    :func:`data_cub_colour`, one grayscale) with ``classes.txt``, ``images.txt``,
    ``image_class_labels.txt``, ``train_test_split.txt``, ``bounding_boxes.txt``,
    and the top-level ``attributes.txt`` of the official archive.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "CUB_200_2011.tgz"
    files: dict[str, bytes] = {}
    classes, images, labels, split, boxes = [], [], [], [], []
    image_id = 0
    for c, name in enumerate(DATA_CUB_CLASSES):
        class_id = int(name.split(".")[0])
        classes.append(f"{class_id} {name}")
        species = name.split(".", 1)[1]
        for k in range(data_cub_count(c)):
            image_id += 1
            filename = f"{name}/{species}_{k + 1:04d}_{100000 + image_id}.jpg"
            if (c, k) == (0, 0):
                payload = data_jpeg(np.full((30, 40), 128, dtype=np.uint8))  # a grayscale photo
            else:
                payload = data_jpeg(data_constant(30, 40, data_cub_colour(c, k)))
            files[f"CUB_200_2011/images/{filename}"] = payload
            images.append(f"{image_id} {filename}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {k % 2}")
            boxes.append(f"{image_id} 2.0 3.0 30.0 20.0")
    meta = {
        "CUB_200_2011/classes.txt": classes,
        "CUB_200_2011/images.txt": images,
        "CUB_200_2011/image_class_labels.txt": labels,
        "CUB_200_2011/train_test_split.txt": split,
        "CUB_200_2011/bounding_boxes.txt": boxes,
        "attributes.txt": ["1 has_bill_shape::curved_(up_or_down)", "2 has_bill_shape::dagger"],
    }
    for name, lines in meta.items():
        files[name] = ("\n".join(lines) + "\n").encode()
    folders = sorted({parent for name in files for parent in _parents(name)})
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(folders + list(files)):
            if name in files:
                data_add_tar_bytes(tar, name, files[name])
            else:
                data_add_tar_dir(tar, name)
    return path


# ============================================================================
# GTSRB: GTSRB_Final_Training_Images.zip
# ============================================================================
#: classes of GTSRB (as in the official training set)
DATA_GTSRB_CLASSES = 43


def data_gtsrb_images(c: int) -> list[tuple[int, int]]:
    """(track, frame) of the images of class ``c`` (2 or 4 images, 1 or 2 tracks)."""
    return [(track, frame) for track in range(1 + c % 2) for frame in (0, 5)]


def data_gtsrb_colour(c: int, k: int) -> tuple[int, int, int]:
    """Constant colour of the ``k``-th image (sorted file order) of class ``c``."""
    return 10 + 5 * c, 20 + 50 * k, 250 - 5 * c


def data_build_gtsrb(folder: Path) -> Path:
    """A tiny ``GTSRB_Final_Training_Images.zip`` in the official layout; returns the archive.

    ``GTSRB/Final_Training/Images/<000NN>/<track>_<frame>.ppm`` (binary PPMs of
    assorted small sizes, constant colours of :func:`data_gtsrb_colour`) and
    ``GT-<000NN>.csv`` (semicolon-separated, CRLF) for each of the 43 classes.
    """
    archive = _Zip()
    for c in range(DATA_GTSRB_CLASSES):
        base = f"GTSRB/Final_Training/Images/{c:05d}/"
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for k, (track, frame) in enumerate(data_gtsrb_images(c)):
            width, height = 15 + c % 5, 15 + frame
            filename = f"{track:05d}_{frame:05d}.ppm"
            archive.add(base + filename, data_ppm(data_constant(height, width, data_gtsrb_colour(c, k))))
            rows.append(f"{filename};{width};{height};5;5;{width - 5};{height - 5};{c}")
        archive.add(base + f"GT-{c:05d}.csv", "\r\n".join(rows) + "\r\n")
    return archive.write(folder / "GTSRB_Final_Training_Images.zip")


# ============================================================================
# the fixture
# ============================================================================
@pytest.fixture
def data_builders():
    """The tiny-archive builders above, for tests: ``data_builders.cifar100(folder)`` etc."""

    class Builders:
        cifar100 = staticmethod(data_build_cifar100)
        aircraft = staticmethod(data_build_aircraft)
        tinyimagenet = staticmethod(data_build_tinyimagenet)
        omniglot = staticmethod(data_build_omniglot)
        miniimagenet = staticmethod(data_build_miniimagenet)
        cub = staticmethod(data_build_cub)
        gtsrb = staticmethod(data_build_gtsrb)
        png = staticmethod(data_png)
        jpeg = staticmethod(data_jpeg)
        ppm = staticmethod(data_ppm)
        add_tar_bytes = staticmethod(data_add_tar_bytes)
        aircraft_variants = DATA_AIRCRAFT_VARIANTS

    return Builders
