import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

# fixtures of the engine/experiment tests (synthetic data root, config composition)
pytest_plugins = ["fixtures_engine"]

# Tests are CPU-only and deterministic.
torch.use_deterministic_algorithms(True, warn_only=True)


# ============================================================================
# kml.data fixtures (data helper). Every fixture here starts with ``data_``.
# ============================================================================
import io as _data_io  # noqa: E402
import pickle as _data_pickle  # noqa: E402
import tarfile as _data_tarfile  # noqa: E402
import time as _data_time  # noqa: E402
import zipfile as _data_zipfile  # noqa: E402
from pathlib import Path as _DataPath  # noqa: E402

import numpy as _data_np  # noqa: E402
import pytest  # noqa: E402

#: image size of the shared real subsets prepared once per test session
DATA_SHARED_SIZE = 28
#: image size of the synthetic modes generated once per test session
DATA_SYNTHETIC_SIZE = 16
#: folder name in ../shared/data of each dataset
DATA_SHARED_FOLDERS = {
    "omniglot": "omniglot",
    "miniimagenet": "miniimagenet",
    "cub": "cub",
    "gtsrb": "gtsrb",
    "tinyimagenet": "tinyimagenet32",
}


def data_shared_location() -> _DataPath:
    """``$KML_SHARED_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get("KML_SHARED_DATA")
    if env:
        return _DataPath(env)
    return _DataPath(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_shared_dir() -> _DataPath:
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
def data_shared_root(tmp_path_factory, data_shared_dir) -> _DataPath:
    """A data root with the five shared subsets prepared at DATA_SHARED_SIZE (once per session).

    Preparation seconds per dataset are stored in ``<root>/timings.txt``.
    """
    from kml.data import prepare_dataset

    root = tmp_path_factory.mktemp("data-shared")
    lines = []
    for name, folder in DATA_SHARED_FOLDERS.items():
        start = _data_time.perf_counter()
        prepare_dataset(name, root, DATA_SHARED_SIZE, source=data_shared_dir / folder, verbose=False)
        lines.append(f"{name} {_data_time.perf_counter() - start:.2f}")
    (root / "timings.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def data_synthetic_root(tmp_path_factory) -> _DataPath:
    """A data root with the three synthetic modes generated at DATA_SYNTHETIC_SIZE (once per session)."""
    from kml.data import SYNTHETIC_MIXTURE, prepare_dataset

    root = tmp_path_factory.mktemp("data-synthetic")
    for name in SYNTHETIC_MIXTURE:
        prepare_dataset(name, root, DATA_SYNTHETIC_SIZE, verbose=False)
    return root


def data_png(array) -> bytes:
    """PNG bytes of a uint8 (H, W[, 3]) array."""
    from PIL import Image

    buffer = _data_io.BytesIO()
    Image.fromarray(_data_np.asarray(array, dtype=_data_np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_jpeg(array, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) array."""
    from PIL import Image

    buffer = _data_io.BytesIO()
    Image.fromarray(_data_np.asarray(array, dtype=_data_np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def data_add_tar_bytes(tar: _data_tarfile.TarFile, name: str, payload: bytes) -> None:
    info = _data_tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 0
    tar.addfile(info, _data_io.BytesIO(payload))


def data_build_cifar100(folder: _DataPath, per_class: tuple[int, int] = (2, 1)) -> _DataPath:
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
                image = _data_np.zeros((3, 32, 32), dtype=_data_np.uint8)
                image[0], image[1], image[2] = f, offset + k, 200
                data.append(image.reshape(-1))
                fine.append(f)
                coarse.append(f // 5)
        batches[part] = {
            b"filenames": [f"{part}_{i}.png".encode() for i in range(len(fine))],
            b"batch_label": f"{part} batch".encode(),
            b"fine_labels": fine,
            b"coarse_labels": coarse,
            b"data": _data_np.stack(data),
        }
    meta = {"fine_label_names": fine_names, "coarse_label_names": coarse_names}
    path = folder / "cifar-100-python.tar.gz"
    with _data_tarfile.open(path, "w:gz") as tar:
        for part, batch in batches.items():
            data_add_tar_bytes(tar, f"cifar-100-python/{part}", _data_pickle.dumps(batch, protocol=2))
        data_add_tar_bytes(tar, "cifar-100-python/meta", _data_pickle.dumps(meta, protocol=2))
    return path


#: FGVC-Aircraft variant names of the tiny archive: 100, including names with '/'
DATA_AIRCRAFT_VARIANTS = ["F-16A/B", "F/A-18", "Cessna 172", "DC-3"] + [f"Variant-{i:03d}" for i in range(96)]


def data_build_aircraft(folder: _DataPath, per_class: int = 2, corrupt: str | None = None) -> _DataPath:
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
            pixels = _data_np.full((60, 40, 3), 90 + (v % 50), dtype=_data_np.uint8)
            pixels[-20:] = (255, 0, 255)
            # PNG bytes under the official .jpg name: lossless, so the crop is checked exactly
            images[image_id] = b"not a jpeg" if image_id == corrupt else data_png(pixels)
            lists[("train", "val", "test")[k % 3]].append(f"{image_id} {variant}")
    with _data_tarfile.open(path, "w:gz") as tar:
        root = "fgvc-aircraft-2013b/data/"
        data_add_tar_bytes(tar, root + "variants.txt", ("\n".join(DATA_AIRCRAFT_VARIANTS) + "\n").encode())
        for part, rows in lists.items():
            data_add_tar_bytes(tar, root + f"images_variant_{part}.txt", ("\n".join(rows) + "\n").encode())
        for image_id, payload in images.items():
            data_add_tar_bytes(tar, root + f"images/{image_id}.jpg", payload)
    return path


def data_build_tinyimagenet(folder: _DataPath, classes: int = 10, per_class: int = 3) -> _DataPath:
    """A tiny official-layout ``tiny-imagenet-200.zip`` with 64x64 JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-imagenet-200.zip"
    wnids = [f"n{10000000 + c:08d}" for c in range(classes)]
    with _data_zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        zf.writestr("tiny-imagenet-200/words.txt", "\n".join(f"{w}\tthing {i}" for i, w in enumerate(wnids)) + "\n")
        for c, wnid in enumerate(wnids):
            for k in range(per_class):
                pixels = _data_np.full((64, 64, 3), 10 * c + k, dtype=_data_np.uint8)
                zf.writestr(f"tiny-imagenet-200/train/{wnid}/images/{wnid}_{k}.JPEG", data_jpeg(pixels))
            zf.writestr(f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt", "")
    return path


@pytest.fixture
def data_builders():
    """The tiny-archive builders above, for tests: ``data_builders.cifar100(folder)`` etc."""

    class Builders:
        cifar100 = staticmethod(data_build_cifar100)
        aircraft = staticmethod(data_build_aircraft)
        tinyimagenet = staticmethod(data_build_tinyimagenet)
        png = staticmethod(data_png)
        jpeg = staticmethod(data_jpeg)
        add_tar_bytes = staticmethod(data_add_tar_bytes)
        aircraft_variants = DATA_AIRCRAFT_VARIANTS

    return Builders


# ============================================================================
# end of kml.data fixtures
# ============================================================================
