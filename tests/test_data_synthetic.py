"""Embedded synthetic modes: sizes, splits, determinism, automatic caching, distinctness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_data import DATA_SYNTHETIC_SIZE

from kml.data import (
    SYNTHETIC_MIXTURE,
    DataOptions,
    get_spec,
    get_tasksets,
    prepare_dataset,
    read_manifest,
    resolve_names,
)
from kml.data.prepare import prepared_path
from kml.data.storage import load_split_array

SIZE = DATA_SYNTHETIC_SIZE


def _arrays(root, name, size=SIZE):
    folder = prepared_path(name, root, size)
    manifest = read_manifest(folder)
    return manifest, {s: load_split_array(folder, s, manifest) for s in ("train", "val", "test")}


def test_names_and_mixture():
    assert SYNTHETIC_MIXTURE == ("synthetic_glyphs", "synthetic_textures", "synthetic_shapes")
    assert resolve_names("synthetic") == list(SYNTHETIC_MIXTURE)
    assert resolve_names(["synthetic_shapes", "omniglot"]) == ["synthetic_shapes", "omniglot"]
    assert resolve_names("synthetic_glyphs, synthetic_textures") == ["synthetic_glyphs", "synthetic_textures"]


@pytest.mark.parametrize("name", SYNTHETIC_MIXTURE)
def test_mode_sizes_and_splits(data_synthetic_root, name):
    manifest, arrays = _arrays(data_synthetic_root, name)
    classes = [len(manifest.splits[s].classes) for s in ("train", "val", "test")]
    assert classes == [210, 45, 45] and sum(classes) >= 200
    assert all(count >= 20 for s in manifest.splits.values() for count in s.counts)
    names = [c for s in manifest.splits.values() for c in s.classes]
    assert len(set(names)) == 300
    channels = 1 if name == "synthetic_glyphs" else 3
    for split, array in arrays.items():
        assert array.shape == (manifest.splits[split].num_images, SIZE, SIZE, channels) and array.dtype == np.uint8
    assert manifest.sources == [{"generator": name, "seed": 0}] and manifest.extra["generator"]
    # no two images of a mode are identical, and images of a class vary
    flat = arrays["train"].reshape(len(arrays["train"]), -1)
    assert len(np.unique(flat, axis=0)) == len(flat)


def test_glyphs_are_white_strokes_on_black(data_synthetic_root):
    _, arrays = _arrays(data_synthetic_root, "synthetic_glyphs")
    pixels = arrays["train"].astype(np.float32) / 255
    assert np.median(pixels) == 0.0 and pixels.max() == 1.0 and 0.05 < pixels.mean() < 0.4
    border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], axis=1)
    assert border.mean() < 0.05


def test_generation_is_deterministic_and_seeded(tmp_path):
    spec = get_spec("synthetic_textures")
    a = prepare_dataset("synthetic_textures", tmp_path / "a", 12, verbose=False)
    b = prepare_dataset("synthetic_textures", tmp_path / "b", 12, verbose=False)
    c = prepare_dataset("synthetic_textures", tmp_path / "c", 12, split_seed=1, verbose=False)
    assert c.name == "12-seeded-seed1"
    for split in ("train", "test"):
        x, y, z = (np.load(folder / f"{split}.npy") for folder in (a, b, c))
        assert np.array_equal(x, y) and not np.array_equal(x, z)
    for name in ("synthetic_glyphs", "synthetic_shapes"):
        spec = get_spec(name)
        first, second = spec.listing(0), spec.listing(0)
        assert first.splits == second.splits and spec.listing(1).splits != first.splits
        (_, [(index, params)]) = first.splits["test"][0]
        one = spec.render_class(params, spec.class_rng(0, index), 3, 12)
        two = spec.render_class(params, spec.class_rng(0, index), 3, 12)
        assert np.array_equal(one, two)


def test_tasksets_generate_on_first_use_then_reuse_the_cache(tmp_path):
    quiet = DataOptions(verbose=False)
    tasksets = get_tasksets("synthetic_textures", 5, 1, 3, root=tmp_path, image_size=12, options=quiet)
    folder = prepared_path("synthetic_textures", tmp_path, 12)
    stamp = (folder / "train.npy").stat().st_mtime_ns
    again = get_tasksets("synthetic_textures", 5, 1, 3, root=tmp_path, image_size=12, options=quiet)
    assert (folder / "train.npy").stat().st_mtime_ns == stamp
    assert torch.equal(tasksets.test.sample(2).support, again.test.sample(2).support)


def test_synthetic_mixture_sampling(data_synthetic_root):
    tasksets = get_tasksets("synthetic", ways=5, shots=1, queries=15, root=data_synthetic_root, image_size=SIZE)
    assert tasksets.train.mode_names == list(SYNTHETIC_MIXTURE)
    batch = tasksets.train.sample(6)
    assert batch.modes.tolist() == [0, 1, 2, 0, 1, 2]
    assert batch.query.shape == (6, 75, 3, SIZE, SIZE)
    glyphs = batch.support[batch.modes == 0]
    assert torch.equal(glyphs[:, :, 0], glyphs[:, :, 2])  # grayscale mode served as 3 equal channels
    for split in ("val", "test"):
        assert tasksets[split].mode_names == list(SYNTHETIC_MIXTURE)


def _features(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / 255
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    grey = x.mean(-1)
    saturation = x.max(-1) - x.min(-1)
    gradient = np.abs(np.diff(grey, axis=1)).mean((1, 2)) + np.abs(np.diff(grey, axis=2)).mean((1, 2))
    return np.stack(
        [*x.mean((1, 2)).T, grey.std((1, 2)), saturation.mean((1, 2)), (grey < 0.05).mean((1, 2)), gradient], 1
    )


def test_modes_are_visually_distinct(data_synthetic_root):
    """Six simple image statistics tell the three modes apart (5-nearest-neighbours, > 95 %)."""
    train, test = [], []
    for label, name in enumerate(SYNTHETIC_MIXTURE):
        _, arrays = _arrays(data_synthetic_root, name)
        train.append((_features(arrays["train"][::7]), label))
        test.append((_features(arrays["test"][::2]), label))
    x = np.concatenate([f for f, _ in train])
    y = np.concatenate([[label] * len(f) for f, label in train])
    mean, std = x.mean(0), x.std(0) + 1e-6
    reference = (x - mean) / std
    correct = total = 0
    for features, label in test:
        z = (features - mean) / std
        nearest = np.argsort(((z[:, None] - reference[None]) ** 2).sum(-1), 1)[:, :5]
        predicted = np.array([np.bincount(y[row], minlength=3).argmax() for row in nearest])
        correct += int((predicted == label).sum())
        total += len(z)
    assert correct / total > 0.95


def test_modes_are_not_trivial_for_pixel_matching(data_synthetic_root):
    """5-way 1-shot nearest neighbour in pixel space is far from perfect on every mode."""
    tasksets = get_tasksets("synthetic", ways=5, shots=1, queries=5, root=data_synthetic_root, image_size=SIZE)
    for name in SYNTHETIC_MIXTURE:
        correct = total = 0
        for batch in tasksets.test.eval_tasks(name, 100, 50):
            support, query = batch.support.flatten(2), batch.query.flatten(2)
            predicted = batch.support_labels.gather(1, torch.cdist(query, support).argmin(-1))
            correct += int((predicted == batch.query_labels).sum())
            total += predicted.numel()
        assert 0.25 < correct / total < 0.8, (name, correct / total)
