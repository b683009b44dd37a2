"""The real dataset subsets (``$KML_SHARED_DATA``) prepare with source= and give their documented counts.

Skipped when the folder is absent (the readers are then covered by the tiny official-format
archives of ``test_data_readers.py``), unless KML_REQUIRE_SHARED_DATA=1 (CI), which
turns the absence into a failure (see the ``data_shared_dir`` fixture).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_data import DATA_SHARED_FOLDERS, DATA_SHARED_SIZE

from kml.data import DataError, fixed_eval_tasks, get_spec, get_tasksets, prepare_all, read_manifest
from kml.data.datasets.omniglot import VINYALS_TEST, VINYALS_TRAIN, VINYALS_VAL
from kml.data.prepare import prepared_path
from kml.data.sources import SourceTree
from kml.data.storage import load_split_array

SIZE = DATA_SHARED_SIZE


def _manifest(root, name, **kw):
    return read_manifest(prepared_path(name, root, SIZE, **kw))


def _classes(manifest):
    return [len(manifest.splits[s].classes) for s in ("train", "val", "test")]


def test_preparation_times_are_recorded(data_shared_root):
    timings = dict(line.split() for line in (data_shared_root / "timings.txt").read_text().splitlines())
    assert set(timings) == set(DATA_SHARED_FOLDERS)
    print("prepare seconds at", SIZE, "px:", timings)


def test_omniglot_vinyals_counts_and_pixels(data_shared_root):
    manifest = _manifest(data_shared_root, "omniglot")
    assert manifest.split_scheme == "vinyals" and manifest.rotations and manifest.channels == 1
    assert _classes(manifest) == [1028, 172, 423]
    assert all(count == 20 for s in manifest.splits.values() for count in s.counts)
    alphabets = manifest.extra["alphabets"]
    assert set(alphabets["train"]) == set(VINYALS_TRAIN)
    assert set(alphabets["val"]) == set(VINYALS_VAL)
    assert set(alphabets["test"]) == set(VINYALS_TEST)
    gurmukhi = {s: [c for c in manifest.splits[s].classes if c.startswith("Gurmukhi/")] for s in ("train", "test")}
    assert len(gurmukhi["train"]) == 41 and gurmukhi["test"] == [f"Gurmukhi/character{i}" for i in range(42, 46)]
    images = load_split_array(prepared_path("omniglot", data_shared_root, SIZE), "train", manifest)
    assert images.shape == (20560, SIZE, SIZE, 1)
    # strokes 1 (255), background 0 after preprocessing: mostly black, white strokes present
    sample = images[::97].astype(np.float32) / 255
    assert np.median(sample) == 0.0 and sample.max() == 1.0
    assert 0.03 < sample.mean() < 0.35
    corners = sample[:, [0, 0, -1, -1], [0, -1, 0, -1], 0]
    assert (corners < 0.05).mean() > 0.95


def test_omniglot_lake_split_counts(data_shared_dir, tmp_path):
    spec = get_spec("omniglot")
    with SourceTree([data_shared_dir / "omniglot"], spec.archive_patterns, scratch=tmp_path) as tree:
        listing = spec.collect(tree, "lake", 0)
        again = spec.collect(tree, "lake", 0)
        other = spec.collect(tree, "lake", 1)
    counts = {s: len(c) for s, c in listing.splits.items()}
    assert counts["train"] + counts["val"] == 964 and counts["test"] == 659
    assert len(listing.extra["alphabets"]["val"]) == 5 and len(listing.extra["alphabets"]["test"]) == 20
    assert listing.extra == again.extra and listing.extra != other.extra


def test_miniimagenet_counts(data_shared_root):
    manifest = _manifest(data_shared_root, "miniimagenet")
    assert _classes(manifest) == [64, 16, 20]
    # the complete train split (600 images per class); val and test keep 100 per class
    assert all(count == 600 for count in manifest.splits["train"].counts)
    assert all(count == 100 for split in ("val", "test") for count in manifest.splits[split].counts)
    assert manifest.channels == 3 and not manifest.rotations


def test_cub_counts(data_shared_root):
    manifest = _manifest(data_shared_root, "cub")
    assert _classes(manifest) == [70, 15, 15]  # 70/15/15 % of the 100 shipped species
    assert sum(manifest.splits[s].num_images for s in manifest.splits) == 5902
    assert all(45 <= count <= 60 for s in manifest.splits.values() for count in s.counts)
    every = [c for s in manifest.splits.values() for c in s.classes]
    assert len(set(every)) == 100 and all(s.classes == sorted(s.classes) for s in manifest.splits.values())


def test_gtsrb_counts_and_test_only_split(data_shared_root, data_shared_dir, tmp_path):
    manifest = _manifest(data_shared_root, "gtsrb")
    assert _classes(manifest) == [30, 6, 7]
    assert sum(manifest.splits[s].num_images for s in manifest.splits) == 7842
    spec = get_spec("gtsrb")
    with SourceTree([data_shared_dir / "gtsrb"], spec.archive_patterns, scratch=tmp_path) as tree:
        listing = spec.collect(tree, "test_only", 0)
    assert [len(listing.splits[s]) for s in ("train", "val", "test")] == [0, 0, 43]


def test_tinyimagenet_counts_and_overlap_with_miniimagenet(data_shared_root, data_shared_dir):
    manifest = _manifest(data_shared_root, "tinyimagenet")
    assert _classes(manifest) == [140, 30, 30]
    assert all(count == 50 for s in manifest.splits.values() for count in s.counts)
    listed = {line.split("\t")[0] for line in
              (data_shared_dir / "tinyimagenet32" / "overlap_with_miniimagenet_wnids.txt").read_text().splitlines()
              if line.strip()}
    assert len(listed) == 25
    both = get_tasksets(["miniimagenet", "tinyimagenet"], 5, 1, 5, root=data_shared_root, image_size=SIZE)
    alone = get_tasksets("tinyimagenet", 5, 1, 5, root=data_shared_root, image_size=SIZE)
    dropped = set()
    for split in ("train", "val", "test"):
        tiny_in_mix = both[split].modes[1]
        tiny_alone = alone[split].modes[0]
        assert not set(tiny_in_mix.class_names) & listed
        assert set(tiny_alone.class_names) - set(tiny_in_mix.class_names) == set(tiny_in_mix.excluded_classes)
        dropped |= set(tiny_in_mix.excluded_classes)
        assert tiny_in_mix.images.shape[0] == 50 * tiny_in_mix.num_classes
    assert dropped == listed


def test_five_mode_mixture_from_shared_data(data_shared_root):
    names = ["omniglot", "miniimagenet", "tinyimagenet", "cub", "gtsrb"]
    tasksets = get_tasksets(names, ways=5, shots=1, queries=15, root=data_shared_root, image_size=SIZE, seed=1)
    batch = tasksets.train.sample(10)
    assert batch.support.shape == (10, 5, 3, SIZE, SIZE) and batch.query.shape == (10, 75, 3, SIZE, SIZE)
    assert torch.bincount(batch.modes, minlength=5).tolist() == [2, 2, 2, 2, 2]
    omniglot = batch.support[batch.modes == 0]
    assert torch.equal(omniglot[:, :, 0], omniglot[:, :, 1])  # grayscale tiled to 3 channels
    # the fixed evaluation tasks of a mode are the same from the mixture and from a specialist's sampler
    specialist = get_tasksets("cub", ways=5, shots=1, queries=15, root=data_shared_root, image_size=SIZE, seed=9)
    (_, mixed), = [(n, b) for n, b in fixed_eval_tasks(tasksets.test, 4, 4, seed=2) if n == "cub"]
    (_, alone), = list(fixed_eval_tasks(specialist.test, 4, 4, seed=2))
    assert torch.equal(mixed.support, alone.support) and torch.equal(mixed.query, alone.query)
    # 20-way is too many for the 6 val classes of gtsrb
    with pytest.raises(DataError, match=r"20-way tasks need 20 classes but split 'val' of gtsrb has 6"):
        get_tasksets("gtsrb", ways=20, shots=1, queries=1, root=data_shared_root, image_size=SIZE)
    # CUB classes have 45-60 images: 5 shots + 50 queries need replacement
    with pytest.raises(DataError,
                       match=r"shots \+ queries = 55 but class .* has only 4\d images.*data.replacement=true"):
        get_tasksets("cub", ways=5, shots=5, queries=50, root=data_shared_root, image_size=SIZE)
    with pytest.warns(DeprecationWarning, match=r"is now get_tasksets\(..., options=DataOptions\("):  # kml 0.1's form
        ok = get_tasksets("cub", 5, 5, 50, root=data_shared_root, image_size=SIZE, replacement=True)
    assert ok.train.sample(2).query.shape == (2, 250, 3, SIZE, SIZE)


def test_prepare_all_finds_every_shared_dataset(data_shared_dir, data_shared_root):
    """``dataset=all source=<folder of the real subsets>`` finds the five sets (here: already prepared, so no work)."""
    done = prepare_all(data_shared_root, SIZE, source=data_shared_dir, verbose=False, include_synthetic=False)
    assert set(DATA_SHARED_FOLDERS) <= set(done)
    for name in DATA_SHARED_FOLDERS:
        assert done[name] == prepared_path(name, data_shared_root, SIZE)
