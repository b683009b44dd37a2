"""Every real-dataset reader on a tiny archive in its official format (built by ``data_builders``).

Each test prepares one tiny archive with ``prepare_dataset(..., source=...)`` and checks the
classes of each split (as the dataset's split rule gives them), the images per class, the
stored arrays (uint8 ``(N, H, W, C)``), the manifest and pixels that a decoding bug would change.
No real data is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import (
    DATA_CUB_CLASSES,
    DATA_GTSRB_CLASSES,
    DATA_MINIIMAGENET_WNIDS,
    DATA_OMNIGLOT_ALPHABETS,
    DATA_OMNIGLOT_DRAWERS,
    DATA_OMNIGLOT_SIZE,
    data_cub_colour,
    data_cub_count,
    data_gtsrb_colour,
    data_gtsrb_images,
    data_miniimagenet_colour,
    data_omniglot_strokes,
)

import kml
from kml.data import (
    DataError,
    DataOptions,
    file_digest,
    get_spec,
    get_tasksets,
    load_modes,
    prepare_all,
    prepare_dataset,
    read_manifest,
)
from kml.data.sources import SourceTree
from kml.data.splits import seeded_class_split, split_sizes
from kml.data.storage import load_split_array

SPLITS = ("train", "val", "test")


def _counts(folder):
    manifest = read_manifest(folder)
    return [len(manifest.splits[s].classes) for s in SPLITS], manifest


def _arrays(folder, manifest):
    """Each split's array, loaded without the loader's own shape check (checked here)."""
    arrays = {s: np.load(folder / f"{s}.npy", allow_pickle=False) for s in SPLITS}
    for split, array in arrays.items():
        info = manifest.splits[split]
        assert array.dtype == np.uint8
        assert array.shape == (info.num_images, manifest.image_size, manifest.image_size, manifest.channels)
        np.testing.assert_array_equal(load_split_array(folder, split, manifest), array)
    return arrays


def _class_images(array, info):
    """(class name, its rows) of a split, in storage order."""
    return [(name, array[start : start + count]) for name, start, count in zip(info.classes, info.offsets, info.counts)]


def _archives(manifest):
    return {entry["archive"]: entry for entry in manifest.sources if "archive" in entry}


def _check_common(manifest, dataset, size, scheme, channels, rotations=False):
    assert (manifest.dataset, manifest.image_size, manifest.split_scheme, manifest.split_seed) == (
        dataset, size, scheme, 0
    )  # fmt: skip
    assert manifest.channels == channels and manifest.rotations == rotations
    assert manifest.kml_version == kml.__version__
    for info in manifest.splits.values():
        assert info.classes == sorted(info.classes) and len(set(info.classes)) == len(info.classes)


# ============================================================================
# Omniglot
# ============================================================================
#: the vinyals split of the tiny zips (Gurmukhi 01-41 train, 42-45 test; other alphabets by list)
OMNIGLOT_VINYALS = {
    "train": [
        "Angelic/character01", "Angelic/character02", "Greek/character01", "Greek/character02",
        "Gurmukhi/character01", "Gurmukhi/character41", "Korean/character01", "Korean/character02",
        "Latin/character01", "Latin/character02", "Tifinagh/character01", "Tifinagh/character02",
    ],
    "val": ["Armenian/character01", "Armenian/character02", "Bengali/character01", "Bengali/character02"],
    "test": [
        "Gurmukhi/character42", "Gurmukhi/character45", "Kannada/character01", "Kannada/character02",
        "Tibetan/character01",
    ],
}  # fmt: skip


def test_omniglot_vinyals_split_strokes_and_manifest(tmp_path, data_builders):
    source = data_builders.omniglot(tmp_path / "src")
    size = DATA_OMNIGLOT_SIZE  # the size of the source images: stored pixels are the decoded ones
    folder = prepare_dataset("omniglot", tmp_path / "data", size, source=source, verbose=False)
    assert folder == tmp_path / "data" / "omniglot" / str(size)
    counts, manifest = _counts(folder)
    assert counts == [12, 4, 5]
    _check_common(manifest, "omniglot", size, "vinyals", channels=1, rotations=True)
    assert {s: manifest.splits[s].classes for s in SPLITS} == OMNIGLOT_VINYALS
    assert all(info.counts == [DATA_OMNIGLOT_DRAWERS] * len(info.classes) for info in manifest.splits.values())
    assert manifest.extra["alphabets"] == {
        "train": ["Angelic", "Greek", "Gurmukhi", "Korean", "Latin", "Tifinagh"],
        "val": ["Armenian", "Bengali"],
        "test": ["Gurmukhi", "Kannada", "Tibetan"],
    }
    archives = _archives(manifest)
    assert set(archives) == {"images_background.zip", "images_evaluation.zip"}
    for name, entry in archives.items():
        assert entry["sha256"] == file_digest(source / name) and entry["bytes"] == (source / name).stat().st_size
    # 1-bit PNGs, black ink on white: stored inverted (ink 255, background 0), drawers in file order
    arrays = _arrays(folder, manifest)
    for split in SPLITS:
        for character, images in _class_images(arrays[split], manifest.splits[split]):
            for drawer, image in enumerate(images, start=1):
                expected = data_omniglot_strokes(character, drawer).astype(np.uint8) * 255
                np.testing.assert_array_equal(image[..., 0], expected, err_msg=f"{character} drawer {drawer}")


def test_omniglot_lake_split(tmp_path, data_builders):
    source = data_builders.omniglot(tmp_path / "src")
    folder = prepare_dataset("omniglot", tmp_path / "data", 28, source=source, split="lake", verbose=False)
    assert folder.name == "28-lake-seed0"
    counts, manifest = _counts(folder)
    background = sorted(DATA_OMNIGLOT_ALPHABETS["images_background"])
    evaluation = sorted(DATA_OMNIGLOT_ALPHABETS["images_evaluation"])
    # background alphabets (2 characters each): 5 to val, the remaining one to train; evaluation -> test
    assert counts == [2, 10, 9]
    _check_common(manifest, "omniglot", 28, "lake", channels=1, rotations=True)
    alphabets = manifest.extra["alphabets"]
    assert len(alphabets["val"]) == 5 and sorted(alphabets["train"] + alphabets["val"]) == background
    assert alphabets["test"] == evaluation
    assert manifest.splits["test"].classes == sorted(
        f"{alphabet}/character{n:02d}" for alphabet in evaluation
        for n in DATA_OMNIGLOT_ALPHABETS["images_evaluation"][alphabet]
    )  # fmt: skip
    arrays = _arrays(folder, manifest)
    assert arrays["train"].shape == (2 * DATA_OMNIGLOT_DRAWERS, 28, 28, 1)
    # inverted: black background (blank margin included), white strokes
    for array in arrays.values():
        assert np.median(array) == 0 and array.max() >= 250 and 5 < array.mean() < 80
        assert (array[:, [0, 0, -1, -1], [0, -1, 0, -1]] == 0).all()
    # the val alphabets depend on the split seed
    spec = get_spec("omniglot")
    with SourceTree([source], spec.archive_patterns, scratch=tmp_path / "scratch") as tree:
        trains = {tuple(spec.collect(tree, "lake", seed).extra["alphabets"]["train"]) for seed in range(8)}
    assert len(trains) > 1 and all(len(train) == 1 for train in trains)


def test_omniglot_torchvision_folder_gives_the_same_arrays(tmp_path, data_builders):
    zips = data_builders.omniglot(tmp_path / "zips")
    extracted = data_builders.omniglot(tmp_path / "torchvision", torchvision_layout=True)
    assert (extracted / "omniglot-py" / "images_background" / "Latin" / "character01" / "0001_01.png").is_file()
    a = prepare_dataset("omniglot", tmp_path / "a", 20, source=zips, verbose=False)
    b = prepare_dataset("omniglot", tmp_path / "b", 20, source=extracted, verbose=False)
    ma, mb = read_manifest(a), read_manifest(b)
    assert ma.splits == mb.splits and ma.extra == mb.extra
    assert [entry for entry in mb.sources if "folder" in entry]
    for split in SPLITS:
        np.testing.assert_array_equal(np.load(a / f"{split}.npy"), np.load(b / f"{split}.npy"))


# ============================================================================
# mini-ImageNet
# ============================================================================
def test_miniimagenet_ravi_split_and_pixels(tmp_path, data_builders):
    source = data_builders.miniimagenet(tmp_path / "src", per_class=3)
    folder = prepare_dataset("miniimagenet", tmp_path / "data", 32, source=source, verbose=False)
    counts, manifest = _counts(folder)
    assert counts == [4, 2, 2]
    _check_common(manifest, "miniimagenet", 32, "ravi", channels=3)
    assert {s: manifest.splits[s].classes for s in SPLITS} == {s: sorted(w) for s, w in DATA_MINIIMAGENET_WNIDS.items()}
    assert all(info.counts == [3] * len(info.classes) for info in manifest.splits.values())
    assert set(_archives(manifest)) == {"images.zip"}
    order = [wnid for split in SPLITS for wnid in DATA_MINIIMAGENET_WNIDS[split]]
    arrays = _arrays(folder, manifest)
    for split in SPLITS:
        for wnid, images in _class_images(arrays[split], manifest.splits[split]):
            for k, image in enumerate(images):
                # constant JPEG colours survive decoding and resizing; channel order is RGB
                colour = data_miniimagenet_colour(order.index(wnid), k)
                assert np.abs(image.reshape(-1, 3).astype(int) - colour).max() <= 4, (wnid, k)


def test_miniimagenet_images_folder_gives_the_same_arrays(tmp_path, data_builders):
    zipped = data_builders.miniimagenet(tmp_path / "zip")
    extracted = data_builders.miniimagenet(tmp_path / "folder", extracted=True)
    assert not (extracted / "images.zip").exists() and (extracted / "images").is_dir()
    a = prepare_dataset("miniimagenet", tmp_path / "a", 16, source=zipped, verbose=False)
    b = prepare_dataset("miniimagenet", tmp_path / "b", 16, source=extracted, verbose=False)
    assert read_manifest(a).splits == read_manifest(b).splits
    for split in SPLITS:
        np.testing.assert_array_equal(np.load(a / f"{split}.npy"), np.load(b / f"{split}.npy"))


def test_miniimagenet_inconsistent_csvs_are_refused(tmp_path, data_builders):
    def prepare(source):
        return prepare_dataset("miniimagenet", tmp_path / "data", 16, source=source, verbose=False)

    missing = data_builders.miniimagenet(tmp_path / "missing")
    with open(missing / "val.csv", "a") as handle:
        handle.write("n0185567299999999.jpg,n01855672\n")
    with pytest.raises(DataError, match=r"image 'n0185567299999999.jpg' listed in val.csv is missing"):
        prepare(missing)
    twice = data_builders.miniimagenet(tmp_path / "twice")
    with open(twice / "test.csv", "a") as handle:
        handle.write(f"{(twice / 'train.csv').read_text().splitlines()[1].split(',')[0]},n01532829\n")
    with pytest.raises(DataError, match=r"class n01532829 is in both train.csv and test.csv"):
        prepare(twice)
    header = data_builders.miniimagenet(tmp_path / "header")
    (header / "train.csv").write_text((header / "train.csv").read_text().replace("filename,label", "file,class"))
    with pytest.raises(DataError, match=r"train.csv is not a Ravi split file"):
        prepare(header)
    unlabelled = data_builders.miniimagenet(tmp_path / "unlabelled")
    with open(unlabelled / "val.csv", "a") as handle:
        handle.write("n0185567200000001.jpg\n")
    with pytest.raises(DataError, match=r"line \d+ of val.csv has no label .* each row is 'filename,label'"):
        prepare(unlabelled)
    no_csv = data_builders.miniimagenet(tmp_path / "no-csv")
    (no_csv / "test.csv").unlink()
    with pytest.raises(DataError, match=r"mini-ImageNet test.csv not found"):
        prepare(no_csv)
    assert not (tmp_path / "data" / "miniimagenet" / "16").exists()


# ============================================================================
# CUB-200-2011
# ============================================================================
def test_cub_seeded_split_grayscale_photo_and_pixels(tmp_path, data_builders):
    archive = data_builders.cub(tmp_path / "src")
    folder = prepare_dataset("cub", tmp_path / "data", 16, source=archive, verbose=False)
    counts, manifest = _counts(folder)
    assert tuple(counts) == split_sizes(len(DATA_CUB_CLASSES)) == (8, 2, 2)
    _check_common(manifest, "cub", 16, "seeded", channels=3)
    assert {s: manifest.splits[s].classes for s in SPLITS} == seeded_class_split(DATA_CUB_CLASSES, 0)
    for info in manifest.splits.values():
        assert info.counts == [data_cub_count(DATA_CUB_CLASSES.index(name)) for name in info.classes]
    assert sum(info.num_images for info in manifest.splits.values()) == 30
    assert _archives(manifest)["CUB_200_2011.tgz"]["sha256"] == file_digest(archive)
    arrays = _arrays(folder, manifest)
    for split in SPLITS:
        for name, images in _class_images(arrays[split], manifest.splits[split]):
            c = DATA_CUB_CLASSES.index(name)
            for k, image in enumerate(images.astype(int)):
                if (c, k) == (0, 0):  # the grayscale photo: three equal channels
                    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
                    assert abs(image.mean() - 128) <= 2
                else:
                    assert np.abs(image.reshape(-1, 3) - data_cub_colour(c, k)).max() <= 4, (name, k)
    # the tar is unpacked into a scratch folder that is removed afterwards
    assert sorted(p.name for p in (tmp_path / "data" / "cub").iterdir()) == ["16"]


# ============================================================================
# GTSRB
# ============================================================================
GTSRB_CLASSES = [f"{c:05d}" for c in range(DATA_GTSRB_CLASSES)]


def _check_gtsrb_pixels(folder, manifest):
    arrays = _arrays(folder, manifest)
    for split in SPLITS:
        for name, images in _class_images(arrays[split], manifest.splits[split]):
            for k, image in enumerate(images):
                # lossless PPMs of one colour each stay exactly that colour after resizing
                expected = np.broadcast_to(np.array(data_gtsrb_colour(int(name), k), dtype=np.uint8), image.shape)
                np.testing.assert_array_equal(image, expected, err_msg=f"class {name} image {k}")
    return arrays


def test_gtsrb_seeded_split_and_pixels(tmp_path, data_builders):
    archive = data_builders.gtsrb(tmp_path / "src")
    folder = prepare_dataset("gtsrb", tmp_path / "data", 16, source=tmp_path / "src", verbose=False)
    assert folder.name == "16"
    counts, manifest = _counts(folder)
    assert counts == [30, 6, 7]
    _check_common(manifest, "gtsrb", 16, "seeded", channels=3)
    assert {s: manifest.splits[s].classes for s in SPLITS} == seeded_class_split(GTSRB_CLASSES, 0)
    for info in manifest.splits.values():
        assert info.counts == [len(data_gtsrb_images(int(name))) for name in info.classes]
    assert sum(info.num_images for info in manifest.splits.values()) == sum(
        len(data_gtsrb_images(c)) for c in range(DATA_GTSRB_CLASSES)
    )
    assert _archives(manifest)["GTSRB_Final_Training_Images.zip"]["sha256"] == file_digest(archive)
    _check_gtsrb_pixels(folder, manifest)


def test_gtsrb_test_only_split(tmp_path, data_builders):
    archive = data_builders.gtsrb(tmp_path / "src")
    folder = prepare_dataset("gtsrb", tmp_path / "data", 16, source=archive, split="test_only", verbose=False)
    assert folder.name == "16-test_only-seed0"
    counts, manifest = _counts(folder)
    assert counts == [0, 0, 43]
    _check_common(manifest, "gtsrb", 16, "test_only", channels=3)
    assert manifest.splits["test"].classes == GTSRB_CLASSES
    assert manifest.splits["test"].counts == [len(data_gtsrb_images(c)) for c in range(DATA_GTSRB_CLASSES)]
    arrays = _check_gtsrb_pixels(folder, manifest)
    assert arrays["train"].shape == arrays["val"].shape == (0, 16, 16, 3)
    # no training or validation sampler; test tasks come from the 43 classes
    tasksets = get_tasksets(
        "gtsrb", 5, 1, 1, root=tmp_path / "data", image_size=16, split_schemes={"gtsrb": "test_only"}, verbose=False
    )
    assert tasksets.train is None and tasksets.val is None
    batch = tasksets.test.sample(2)
    assert batch.support.shape == (2, 5, 3, 16, 16) and batch.query.shape == (2, 5, 3, 16, 16)


# ============================================================================
# FC100 (CIFAR-100)
# ============================================================================
def test_fc100_superclass_split_and_pixels(tmp_path, data_builders):
    archive = data_builders.cifar100(tmp_path / "src", per_class=(2, 1))
    folder = prepare_dataset("fc100", tmp_path / "data", 16, source=archive, verbose=False)
    (n_train, n_val, n_test), manifest = _counts(folder)
    assert (n_train, n_val, n_test) == (60, 20, 20)
    _check_common(manifest, "fc100", 16, "superclass", channels=3)
    # fine class f is in superclass f // 5 in the tiny archive
    superclasses = {"train": {1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19}, "val": {8, 11, 13, 16}, "test": {0, 7, 12, 14}}
    for split, supers in superclasses.items():
        fines = [int(name[4:]) for name in manifest.splits[split].classes]
        assert {f // 5 for f in fines} == supers
        assert manifest.splits[split].counts == [3] * len(fines)  # train + test pickles merged
    # constant images: red = fine label, green = index within class, blue = 200 (no colour inversion)
    train = _arrays(folder, manifest)["train"]
    assert train.shape == (180, 16, 16, 3)
    first_fine = int(manifest.splits["train"].classes[0][4:])
    np.testing.assert_array_equal(train[0], np.broadcast_to([first_fine, 0, 200], (16, 16, 3)))
    np.testing.assert_array_equal(train[2], np.broadcast_to([first_fine, 2, 200], (16, 16, 3)))


# ============================================================================
# FGVC-Aircraft
# ============================================================================
def test_aircraft_split_banner_and_slash_variants(tmp_path, data_builders):
    archive = data_builders.aircraft(tmp_path / "src", per_class=2)
    folder = prepare_dataset("aircraft", tmp_path / "data", 16, source=archive, verbose=False)
    counts, manifest = _counts(folder)
    assert counts == [70, 15, 15]
    _check_common(manifest, "aircraft", 16, "seeded", channels=3)
    every = [c for s in SPLITS for c in manifest.splits[s].classes]
    assert sorted(every) == sorted(data_builders.aircraft_variants)
    assert "F-16A/B" in every and "F/A-18" in every  # names with '/' are kept
    arrays = _arrays(folder, manifest)
    for split in SPLITS:
        assert manifest.splits[split].counts == [2] * len(manifest.splits[split].classes)
        pixels = arrays[split].astype(int)
        # the magenta banner (255, 0, 255) is cropped: every pixel is grey (r == g == b)
        assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 2] == pixels[..., 1]).all()
    expected = seeded_class_split(data_builders.aircraft_variants, 0)
    assert {s: manifest.splits[s].classes for s in expected} == expected
    # another split seed gives another (recorded) split, in its own folder
    other = prepare_dataset("aircraft", tmp_path / "data", 16, source=archive, split_seed=3, verbose=False)
    assert other.name == "16-seeded-seed3" and read_manifest(other).split_seed == 3
    assert read_manifest(other).splits["test"].classes != manifest.splits["test"].classes


# ============================================================================
# Tiny-ImageNet
# ============================================================================
def test_tinyimagenet_official_64px_layout(tmp_path, data_builders):
    archive = data_builders.tinyimagenet(tmp_path / "src", classes=20, per_class=3)
    folder = prepare_dataset("tinyimagenet", tmp_path / "data", 16, source=tmp_path / "src", verbose=False)
    counts, manifest = _counts(folder)
    assert counts == [14, 3, 3]
    _check_common(manifest, "tinyimagenet", 16, "seeded", channels=3)
    # only the labelled training images: val/ and test/ images are not classes or images
    assert all(info.counts == [3] * len(info.classes) for info in manifest.splits.values())
    assert manifest.extra["words"]["n10000000"] == "thing 0"
    assert _archives(manifest)[archive.name]["sha256"] == file_digest(archive)
    train = _arrays(folder, manifest)["train"]
    wnid = manifest.splits["train"].classes[0]
    c = int(wnid[1:]) - 10000000
    assert abs(int(train[0].mean()) - 10 * c) <= 2  # constant JPEG value survives decoding + resizing


def test_tinyimagenet_32px_copy_in_the_official_layout(tmp_path, data_builders):
    archive = data_builders.tinyimagenet(
        tmp_path / "src", classes=20, per_class=2, image_size=32, filename="tiny-imagenet-32.zip",
        official_extras=False,
    )  # fmt: skip
    folder = prepare_dataset("tinyimagenet", tmp_path / "data", 16, source=tmp_path / "src", verbose=False)
    counts, manifest = _counts(folder)
    assert counts == [14, 3, 3]
    wnids = [f"n{10000000 + c:08d}" for c in range(20)]
    assert {s: manifest.splits[s].classes for s in SPLITS} == seeded_class_split(wnids, 0)
    assert set(_archives(manifest)) == {archive.name}
    arrays = _arrays(folder, manifest)
    for split in SPLITS:
        for wnid, images in _class_images(arrays[split], manifest.splits[split]):
            for k, image in enumerate(images.astype(int)):
                assert np.abs(image - (10 * wnids.index(wnid) + 3 * k)).max() <= 1, (wnid, k)


def test_tinyimagenet_classes_shared_with_miniimagenet_leave_the_mixture(tmp_path, data_builders):
    shared = {"n01532829", "n01930112"}  # a mini-ImageNet train class and a test class
    wnids = sorted(shared | {f"n{10000000 + c:08d}" for c in range(18)})
    data_builders.tinyimagenet(tmp_path / "tiny", per_class=2, wnids=wnids)
    data_builders.miniimagenet(tmp_path / "mini", per_class=2)
    root = tmp_path / "data"
    prepare_dataset("tinyimagenet", root, 16, source=tmp_path / "tiny", verbose=False)
    prepare_dataset("miniimagenet", root, 16, source=tmp_path / "mini", verbose=False)
    dropped = set()
    for split in SPLITS:
        _, tiny_mixed = load_modes(["miniimagenet", "tinyimagenet"], split, root, 16, verbose=False)
        (tiny_alone,) = load_modes("tinyimagenet", split, root, 16, verbose=False)
        _, tiny_kept = load_modes(["miniimagenet", "tinyimagenet"], split, root, 16, exclude_overlap=False,
                                  verbose=False)
        assert set(tiny_alone.class_names) - set(tiny_mixed.class_names) == set(tiny_mixed.excluded_classes)
        assert not set(tiny_mixed.class_names) & shared
        assert tiny_mixed.images.shape[0] == 2 * tiny_mixed.num_classes
        assert tiny_kept.class_names == tiny_alone.class_names
        dropped |= set(tiny_mixed.excluded_classes)
    assert dropped == shared


# ============================================================================
# all of them together
# ============================================================================
def test_prepare_all_finds_each_tiny_dataset_and_mixes_them(tmp_path, data_builders):
    """``dataset=all`` over a folder holding one folder per dataset, then one 7-mode meta-batch."""
    downloads = tmp_path / "downloads"
    data_builders.omniglot(downloads / "omniglot")
    data_builders.miniimagenet(downloads / "miniimagenet", per_class=2)
    data_builders.cifar100(downloads / "cifar")
    data_builders.cub(downloads / "cub")
    data_builders.aircraft(downloads / "aircraft")
    data_builders.gtsrb(downloads / "gtsrb")
    data_builders.tinyimagenet(downloads / "tinyimagenet32", classes=20, per_class=2, image_size=32,
                               filename="tiny-imagenet-32.zip", official_extras=False)  # fmt: skip
    root = tmp_path / "data"
    names = ["omniglot", "miniimagenet", "fc100", "cub", "aircraft", "gtsrb", "tinyimagenet"]
    done = prepare_all(root, 16, source=downloads, include_synthetic=False, verbose=False)
    assert sorted(done) == sorted(names)
    for name, folder in done.items():
        assert folder == root / name / "16" and read_manifest(folder).dataset == name
    assert json.loads((done["fc100"] / "manifest.json").read_text())["splits"]["val"]["num_classes"] == 20
    tasksets = get_tasksets(names, ways=2, shots=1, queries=1, root=root, image_size=16, seed=0,
                            options=DataOptions(verbose=False))
    batch = tasksets.train.sample(7)
    assert batch.support.shape == (7, 2, 3, 16, 16) and batch.query.shape == (7, 2, 3, 16, 16)
    assert torch.bincount(batch.modes, minlength=7).tolist() == [1] * 7
    omniglot = batch.support[batch.modes == 0]
    assert torch.equal(omniglot[:, :, 0], omniglot[:, :, 1])  # grayscale served as 3 equal channels
    assert [s.mode_names for s in tasksets] == [names] * 3


@pytest.mark.parametrize("name,top", [("cub", "CUB_200_2011"), ("gtsrb", "GTSRB"), ("fc100", "cifar-100-python")])
def test_the_extracted_top_folder_itself_is_a_source(tmp_path, data_builders, name, top):
    """``source=<...>/CUB_200_2011`` (the folder the archive extracts to) prepares the
    same arrays as the archive."""
    import shutil

    builder = {"cub": data_builders.cub, "gtsrb": data_builders.gtsrb, "fc100": data_builders.cifar100}[name]
    archive = builder(tmp_path / "src")
    archive = archive if Path(archive).is_file() else next(Path(archive).glob("*.*"))
    extracted = tmp_path / "extracted"
    shutil.unpack_archive(str(archive), str(extracted))
    assert (extracted / top).is_dir()
    from_archive = prepare_dataset(name, tmp_path / "a", 16, source=archive, verbose=False)
    from_folder = prepare_dataset(name, tmp_path / "b", 16, source=extracted / top, verbose=False)
    for split in ("train", "val", "test"):
        assert np.array_equal(np.load(from_archive / f"{split}.npy"), np.load(from_folder / f"{split}.npy"))
