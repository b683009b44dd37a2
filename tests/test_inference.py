"""Inference from Python: ``kml.load_run`` (a run directory or one checkpoint file),
``learner.predict`` (no query labels) and ``kml.data.load_images`` (image files as a
learner's input)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_engine import TINY, TINY_MAML
from helpers import tiny_episode
from PIL import Image

import kml


@pytest.mark.parametrize("learner,modulation", [("maml", "kml"), ("protonet", "kml"), ("protonet", "none")])
def test_predict_equals_forward_without_query_labels(tiny_learner, learner, modulation):
    net = tiny_learner(learner, modulation).eval()
    support, support_labels, query, query_labels = tiny_episode(dtype=torch.float64, size=16)
    expected = net(support, support_labels, query, query_labels, ways=3).logits
    for vectorized in (True, False):
        logits = net.predict(support, support_labels, query, ways=3, vectorized=vectorized)
        assert logits.shape == (2, 6, 3)  # (T, N*Q, N)
        torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-10)
        assert not logits.requires_grad  # no graph is kept, MAML's inner loop included
    assert all(p.grad is None for p in net.parameters())
    # ways by default: MAML's head size, ProtoNet's number of support labels
    torch.testing.assert_close(net.predict(support, support_labels, query), expected, rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, synthetic_root) -> Path:
    """A tiny MMAML+KML run (second-order inner loop: predict must still adapt)."""
    from fixtures_engine import compose_config

    from kml.engine.runs import run_training

    run_dir = tmp_path_factory.mktemp("inference") / "run"
    cfg = compose_config(["learner=maml", "modulation=kml", f"data.root={synthetic_root}", *TINY, *TINY_MAML,
                          "train.iterations=2"])
    run_training(cfg, run_dir, log=lambda *a: None)
    return run_dir


def test_load_run_from_a_directory_or_a_lone_checkpoint(trained_run, tmp_path, synthetic_root):
    from kml.data import get_tasksets

    learner, config = kml.load_run(trained_run)  # unpacks as (learner, config)
    assert not learner.training and next(learner.parameters()).device == torch.device("cpu")
    assert config.learner.name == "maml" and config.episode.ways == 3
    # a copied checkpoint alone: the config it embeds is enough
    lone = tmp_path / "elsewhere" / "model.pt"
    lone.parent.mkdir()
    shutil.copy(trained_run / "checkpoints" / "last.pt", lone)
    from_file = kml.load_run(lone)
    assert from_file.iteration == 2 and from_file.method == "MMAML+KML" and not from_file.learner.training
    assert from_file.config.data.image_size == config.data.image_size

    batch = next(get_tasksets("synthetic", 3, 1, 2, root=synthetic_root, image_size=16).test.eval_tasks(0, 2, 2))
    a = learner.predict(batch.support, batch.support_labels, batch.query)
    b = from_file.learner.predict(batch.support, batch.support_labels, batch.query)
    assert a.shape == (2, 6, 3) and torch.equal(a, b)
    assert torch.equal(a, learner(*batch.tensors).logits)  # predict is forward's logits


def test_load_run_errors_are_one_line(trained_run, tmp_path):
    from kml.engine.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match=r"does not exist; pass a run directory or a checkpoint file \(.pt\)"):
        kml.load_run(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"is a checkpoint file: drop checkpoint=2"):
        kml.load_run(trained_run / "checkpoints" / "last.pt", checkpoint=2)


def test_image_files_give_the_prepared_pixels_and_classify(trained_run, tmp_path):
    """load_images preprocesses a file exactly as a prepared folder dataset; a user's own
    3-way 1-shot task from image files runs through predict."""
    from kml.data import load_images, prepare_folder

    source = tmp_path / "images"
    paths = []
    for c, rgb in enumerate([(250, 10, 10), (10, 250, 10), (10, 10, 250)]):
        for i in range(2):
            path = source / "train" / f"class{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.zeros((20, 14, 3), dtype=np.uint8) + np.array(rgb, dtype=np.uint8)
            pixels[i::3, :, :] //= 2  # not a flat colour: resizing has something to do
            Image.fromarray(pixels).save(path)
            paths.append(path)
    folder = prepare_folder(source, "mine", tmp_path / "data", image_size=16, layout="splits", verbose=False)
    prepared = np.load(folder / "train.npy")  # (6, 16, 16, 3) uint8, classes in order
    images = load_images(paths, 16)
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(images, torch.from_numpy(prepared).permute(0, 3, 1, 2).float().mul_(1.0 / 255.0))

    learner, config = kml.load_run(trained_run)
    support = load_images(paths[0::2], config.data.image_size)[None]  # one image per class: (1, 3, 3, 16, 16)
    query = load_images(paths[1::2], config.data.image_size)[None]
    logits = learner.predict(support, torch.arange(3)[None], query)
    assert logits.shape == (1, 3, 3) and torch.isfinite(logits).all()


def _omniglot_character(root: Path, name: str) -> tuple[np.ndarray, list[Path]]:
    """The prepared uint8 ``(drawers, H, W, 1)`` rows of Omniglot class ``name`` (train split)
    and the official-format PNG files they were prepared from, in storage order."""
    from kml.data import prepared_path, read_manifest

    folder = prepared_path("omniglot", root / "data", 16)
    info = read_manifest(folder).splits["train"]
    index = info.classes.index(name)
    rows = np.load(folder / "train.npy")[info.offsets[index] : info.offsets[index] + info.counts[index]]
    files = sorted((root / "omni" / "omniglot-py" / "images_background" / name).glob("*.png"))
    return rows, files


@pytest.fixture
def omniglot_root(data_builders, tmp_path) -> Path:
    """Official-format Omniglot zips (and their extracted PNGs), prepared at 16x16."""
    from kml.data import prepare_dataset

    data_builders.omniglot(tmp_path / "omni", torchvision_layout=True)
    prepare_dataset("omniglot", tmp_path / "data", 16, source=tmp_path / "omni", verbose=False)
    return tmp_path


def test_official_omniglot_pngs_through_load_images_equal_the_training_inputs(omniglot_root, caplog):
    """Official Omniglot PNGs are black strokes on white, the prepared arrays white on black:
    ``dataset="omniglot"`` applies the dataset's own preprocessing (grayscale, resize, invert),
    so each file gives exactly the tensor the sampler serves for its prepared copy."""
    from kml.data import MixtureSampler, ModeData, load_images
    from kml.data.imaging import PIXEL_SCALE

    rows, files = _omniglot_character(omniglot_root, "Latin/character01")
    assert len(files) == len(rows) == 3
    expected = torch.from_numpy(rows).permute(0, 3, 1, 2).expand(-1, 3, -1, -1).float().mul(PIXEL_SCALE)
    with caplog.at_level("WARNING"):
        images = load_images(files, 16, dataset="omniglot")
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(images, expected)
    assert not caplog.records  # the official polarity: no warning
    assert not torch.equal(load_images(files, 16), expected)  # a folder dataset's preprocessing differs
    # the sampler's own tensors of those prepared rows (1-way, 3 shots drawn with replacement)
    sampler = MixtureSampler([ModeData.from_arrays("omniglot", "train", rows, [3])], ways=1, shots=3, queries=1,
                             replacement=True, rotations=False)
    for image in sampler.sample(4).support.flatten(0, 1):
        assert any(torch.equal(image, loaded) for loaded in images)
    # the declared polarity holds for every prepared image
    from kml.data import prepared_path

    prepared = np.load(prepared_path("omniglot", omniglot_root / "data", 16) / "train.npy")
    assert (prepared.reshape(len(prepared), -1).mean(axis=1) < 127.5).all()


def test_load_images_warns_in_one_line_when_an_image_has_the_other_polarity(omniglot_root, caplog):
    from kml.data import load_images

    _, files = _omniglot_character(omniglot_root, "Latin/character01")
    inverted = omniglot_root / "inverted.png"  # white strokes on black: already like the prepared arrays
    Image.fromarray(255 - np.asarray(Image.open(files[0]).convert("L"))).save(inverted)
    with caplog.at_level("WARNING"):
        images = load_images([files[1], inverted, files[2]], 16, dataset="omniglot")
    assert images.shape == (3, 3, 16, 16)
    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message and message.startswith("warning: 1 of 3 images")
    assert repr(str(inverted)) in message and "omniglot's prepared images are light strokes on a dark" in message
    caplog.clear()
    with caplog.at_level("WARNING"):  # no polarity to keep (photographs), or no dataset named: no check
        load_images([inverted], 16, dataset="cub")
        load_images([inverted], 16)
    assert not caplog.records


def test_a_run_records_each_datasets_preprocessing_from_the_dataset_itself(omniglot_root, synthetic_root):
    """``run_info.json``'s data record carries each dataset's preprocessing, the very settings
    its preparation (and ``load_images(..., dataset=...)``) applies."""
    from kml.data import get_spec
    from kml.data.provenance import data_provenance

    omniglot = data_provenance("omniglot", omniglot_root / "data", 16)["omniglot"]["preprocessing"]
    assert omniglot == get_spec("omniglot").preprocessing.describe(16)
    assert omniglot["invert"] is True and omniglot["colour"] == "grayscale" and omniglot["size"] == [16, 16]
    assert omniglot["polarity"] == "light_on_dark" and omniglot["crop"] is None
    assert omniglot["stored_channels"] == 1 and omniglot["channels"] == 3
    assert omniglot["normalisation"].startswith("x / 255")
    glyphs = data_provenance("synthetic_glyphs", synthetic_root, 16)["synthetic_glyphs"]["preprocessing"]
    assert glyphs["source"].startswith("rendered") and glyphs["polarity"] == "light_on_dark"
    assert get_spec("aircraft").preprocessing.describe(32)["crop"] == {"bottom_pixels": 20}
    assert get_spec("cub").preprocessing.describe(32)["polarity"] is None
