"""FC100 (Oreshkin et al., 2018): CIFAR-100 split by superclass.

Source: the CIFAR-100 python version ``cifar-100-python.tar.gz`` (the file
torchvision's ``CIFAR100`` downloads, same URL and MD5), or its extracted
``cifar-100-python/`` folder. The ``train`` and ``test`` pickles are merged
(600 images per fine class) and the 100 fine classes are split by coarse
superclass: train {1,2,3,4,5,6,9,10,15,17,18,19} (60 classes), val
{8,11,13,16} (20), test {0,7,12,14} (20). Images are upsampled from 32x32 to
the image size; pixels are kept as they are (the reference code's uint8
overflow that colour-inverts FC100 is not reproduced).

The pickles are read with a restricted unpickler that only accepts the numpy
array types CIFAR uses, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
from PIL import Image

from kml.data.datasets.base import ClassListing, DatasetSpec
from kml.data.download import RemoteFile
from kml.data.errors import DataError
from kml.data.imaging import image_to_array
from kml.data.sources import SourceTree

SUPERCLASSES = {
    "train": (1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19),
    "val": (8, 11, 13, 16),
    "test": (0, 7, 12, 14),
}

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core", 1) if hasattr(np, "_core") else module
        if module == "copy_reg":
            module = "copyreg"
        if module == "__builtin__":
            module = "builtins"
        return super().find_class(module, name)


def load_cifar_pickle(data: bytes, name: str) -> dict:
    """Load one CIFAR python pickle (restricted to numpy arrays and builtins)."""
    try:
        out = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as error:  # any unpickling failure means a bad file
        raise DataError(
            f"cannot read CIFAR-100 file {name!r} ({error}); download cifar-100-python.tar.gz again"
        ) from error
    if not isinstance(out, dict):
        raise DataError(f"CIFAR-100 file {name!r} does not hold a dict; download cifar-100-python.tar.gz again")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in out.items()}


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class FC100(DatasetSpec):
    name = "fc100"
    official_classes = 100
    official_images_per_class = 600
    title = "FC100 (CIFAR-100 by superclass)"
    remote_files = (
        RemoteFile(
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
        ),
    )
    markers = ("cifar-100-python.tar.gz", "cifar-100-python")
    archive_patterns = ("cifar-100-python.tar.gz",)
    split_schemes = ("superclass",)
    default_split = "superclass"
    source_help = "download cifar-100-python.tar.gz from www.cs.toronto.edu/~kriz/cifar.html"

    def collect(self, tree: SourceTree, split: str, seed: int) -> ClassListing:
        fix = "pass source=<cifar-100-python.tar.gz or the folder it was extracted to>"
        meta_path = tree.find_one(r"(?:.*/)?cifar-100-python/meta", "CIFAR-100 meta file", fix)
        meta = load_cifar_pickle(tree.read(meta_path), meta_path)
        fine_names = _names(meta["fine_label_names"])
        pixels, fine, coarse = [], [], []
        for part in ("train", "test"):
            path = tree.find_one(rf"(?:.*/)?cifar-100-python/{part}", f"CIFAR-100 {part} file", fix)
            batch = load_cifar_pickle(tree.read(path), path)
            try:
                data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                pixels.append(data)
                fine.append(np.asarray(batch["fine_labels"], dtype=np.int64))
                coarse.append(np.asarray(batch["coarse_labels"], dtype=np.int64))
            except (KeyError, ValueError) as error:
                raise DataError(f"CIFAR-100 file {path!r} is malformed ({error}); download it again") from error
        images = np.concatenate(pixels).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
        fine_all, coarse_all = np.concatenate(fine), np.concatenate(coarse)
        superclass_of: dict[int, int] = {}
        for f, c in zip(fine_all.tolist(), coarse_all.tolist()):
            if superclass_of.setdefault(f, c) != c:
                raise DataError(f"CIFAR-100 fine class {f} has two superclasses; download the archive again")
        listing: dict[str, list[tuple[str, list[Any]]]] = {}
        for part, superclasses in SUPERCLASSES.items():
            chosen = sorted(f for f, c in superclass_of.items() if c in superclasses)
            listing[part] = [(fine_names[f], list(images[np.flatnonzero(fine_all == f)])) for f in chosen]
        return ClassListing(listing, extra={"superclasses": {k: list(v) for k, v in SUPERCLASSES.items()}})

    def load_item(self, tree: SourceTree, item: np.ndarray, size: int) -> np.ndarray:
        return image_to_array(Image.fromarray(item, "RGB"), size)


SPEC = FC100()
