"""Folder datasets: your own ImageFolder-style tree prepared under a name, then used like any dataset.

Every tree is generated here with PIL: each image is one colour that encodes its class and
its position in the class, so the tests can check which file ended up in which row.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import DATA_SYNTHETIC_SIZE
from fixtures_engine import TINY
from omegaconf import OmegaConf
from PIL import Image

from kml.data import (
    DataError,
    DataOptions,
    get_spec,
    get_tasksets,
    known_names,
    load_modes,
    prepare_command,
    prepare_dataset,
    prepare_folder,
    read_manifest,
    resolve_names,
)
from kml.data.errors import NotPreparedError
from kml.data.imaging import prepare_image
from kml.data.splits import seeded_class_split
from kml.data.storage import SPLITS

SIZE = 8  # prepared image size of most tests
#: file endings cycled over the images of a tree (every accepted kind, in mixed case)
ENDINGS = (".png", ".JPG", ".jpeg", ".bmp", ".ppm", ".TIF", ".tiff", ".webp", ".gif", ".Png")


def colour(class_index: int, image_index: int) -> tuple[int, int, int]:
    """The colour of image ``image_index`` (in sorted order) of class ``class_index``."""
    return (20 + 10 * class_index, 5 + 40 * image_index, 200)


def save(path: Path, rgb, mode: str = "RGB", size=(12, 10)) -> Path:
    """Write one constant image (``size`` = width, height) in the format of its file ending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, rgb)
    options = {"lossless": True} if path.suffix.lower() == ".webp" else {}
    image.save(path, **options)
    return path


def class_tree(source: Path, num_classes: int = 20, base_count: int = 3, prefix: str = "class") -> dict[str, int]:
    """``<source>/<prefix>_NN/MM<ending>`` with 3, 4, 5, 3, ... images; ``{class: count}``."""
    counts = {}
    for c in range(num_classes):
        count = base_count + c % 3
        for i in range(count):
            save(source / f"{prefix}_{c:02d}" / f"{i:02d}{ENDINGS[(c + i) % len(ENDINGS)]}", colour(c, i))
        counts[f"{prefix}_{c:02d}"] = count
    return counts


def split_tree(source: Path, classes: dict[str, int], per_class: int = 3) -> None:
    """``<source>/<split>/<split>_<k>/NN.png`` with ``classes[split]`` classes of ``per_class`` images."""
    for split, num_classes in classes.items():
        for k in range(num_classes):
            for i in range(per_class):
                save(source / split / f"{split}_{k}" / f"{i:02d}.png", colour(k + 5 * SPLITS.index(split), i))


def rows(folder: Path, split: str) -> np.ndarray:
    """The uint8 (N, H, W, 3) array of one prepared split."""
    return np.load(folder / f"{split}.npy")


def one_line_error(call, match: str) -> str:
    """Run ``call``; it must raise a one-line DataError matching ``match``; the message."""
    with pytest.raises(DataError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def leftovers(root: Path) -> list[str]:
    """Everything under ``root`` except the lock files of preparations (as relative paths)."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".locks" not in p.parts)


@pytest.fixture
def mixed_root(tmp_path, data_synthetic_root) -> Path:
    """A data root holding a copy of the synthetic glyphs at DATA_SYNTHETIC_SIZE."""
    root = tmp_path / "data"
    shutil.copytree(data_synthetic_root / "synthetic_glyphs", root / "synthetic_glyphs")
    return root


# ============================================================================
# preparing both layouts
# ============================================================================
def test_class_folders_are_split_by_seed_and_stored_like_a_builtin_dataset(tmp_path):
    source = tmp_path / "my images"
    counts = class_tree(source)
    save(source / "class_02" / "more" / "zz.png", (40, 250, 10))  # nested: part of class_02, sorted last
    counts["class_02"] += 1
    save(source / "class_03" / "zz_gray.png", 77, mode="L")  # grayscale: 3 equal channels, sorted last
    counts["class_03"] += 1
    (source / "class_01" / "notes.txt").write_text("not an image")  # ignored, counted
    save(source / "class_00" / ".thumb.png", (0, 0, 0))  # hidden: ignored
    save(source / ".cache" / "x.png", (0, 0, 0))  # hidden folder: not a class
    (source / "README.md").write_text("my dataset")  # a file at the top: ignored
    root = tmp_path / "data"

    folder = prepare_folder(source, "mine", root, image_size=SIZE, verbose=False)

    assert folder == root / "mine" / str(SIZE)
    manifest = read_manifest(folder)
    assert (manifest.dataset, manifest.image_size, manifest.channels) == ("mine", SIZE, 3)
    assert (manifest.split_scheme, manifest.split_seed, manifest.rotations) == ("seeded", 0, False)
    assert manifest.sources == [{"folder": str(source.resolve())}]
    assert manifest.extra == {
        "kind": "folder",
        "source": str(source.resolve()),
        "layout": "classes",
        "fractions": {"train": 0.7, "val": 0.15, "test": 0.15},
        "ignored_files": 1,
    }
    expected = seeded_class_split(sorted(counts), 0, (0.7, 0.15, 0.15))
    assert [len(expected[s]) for s in SPLITS] == [14, 3, 3]
    for split in SPLITS:
        info = manifest.splits[split]
        assert info.classes == expected[split]
        assert info.counts == [counts[name] for name in info.classes]
        array = rows(folder, split)
        assert array.dtype == np.uint8 and array.shape == (sum(info.counts), SIZE, SIZE, 3)
        for name, offset, count in zip(info.classes, info.offsets, info.counts):
            c = int(name.split("_")[1])
            wanted = [colour(c, i) for i in range(counts[name] - (name in ("class_02", "class_03")))]
            if name == "class_02":
                wanted.append((40, 250, 10))  # more/zz.png sorts after the top-level images
            if name == "class_03":
                wanted.append((77, 77, 77))
            got = array[offset : offset + count].reshape(count, -1, 3)
            assert np.abs(got.astype(int) - np.asarray(wanted)[:, None, :]).max() <= 2, name  # JPEGs: +-2
    # resized exactly as the built-in readers resize: red left half, blue right half
    pattern = np.zeros((10, 12, 3), np.uint8)
    pattern[:, :6] = (255, 0, 0)
    pattern[:, 6:] = (0, 0, 255)
    Image.fromarray(pattern).save(source / "class_00" / "99.png")
    folder = prepare_folder(source, "mine", root, image_size=SIZE, force=True, verbose=False)
    manifest = read_manifest(folder)
    split = next(s for s in SPLITS if "class_00" in manifest.splits[s].classes)
    info = manifest.splits[split]
    index = info.classes.index("class_00")
    last = rows(folder, split)[info.offsets[index] + info.counts[index] - 1]
    assert np.array_equal(last, prepare_image((source / "class_00" / "99.png").read_bytes(), "x", SIZE))
    assert last[:, 0, 0].min() > 200 and last[:, -1, 2].min() > 200 and last[:, 0, 2].max() < 50


def test_the_split_seed_and_the_fractions_are_applied_and_recorded(tmp_path):
    source = tmp_path / "src"
    counts = class_tree(source)
    root = tmp_path / "data"
    seeded = prepare_folder(source, "mine", root, image_size=SIZE, split_seed=1, verbose=False)
    assert seeded == root / "mine" / f"{SIZE}-seeded-seed1"
    manifest = read_manifest(seeded)
    assert manifest.split_seed == 1
    assert {s: manifest.splits[s].classes for s in SPLITS} == seeded_class_split(sorted(counts), 1)
    assert {s: manifest.splits[s].classes for s in SPLITS} != seeded_class_split(sorted(counts), 0)

    half = prepare_folder(source, "half", root, SIZE, fractions=(0.5, 0.25), verbose=False)
    with pytest.warns(DeprecationWarning, match=r"is now fractions=\(train, val\)"):  # kml 0.1's keywords
        again = prepare_folder(source, "half", root, SIZE, train_fraction=0.5, val_fraction=0.25, verbose=False)
    assert again == half
    manifest = read_manifest(half)
    assert [len(manifest.splits[s].classes) for s in SPLITS] == [10, 5, 5]
    assert manifest.extra["fractions"] == {"train": 0.5, "val": 0.25, "test": 0.25}
    assert {s: manifest.splits[s].classes for s in SPLITS} == seeded_class_split(sorted(counts), 0, (0.5, 0.25, 0.25))
    assert prepare_command("half", root, 32) == (
        f"python scripts/prepare_data.py dataset=folder source={source.resolve()} name=half data.root={root} "
        "image_size=32 train_fraction=0.5 val_fraction=0.25"
    )


def test_split_folders_are_kept_and_a_missing_split_is_empty(tmp_path):
    source = tmp_path / "src"
    split_tree(source, {"train": 4, "test": 3})
    save(source / ".git" / "objects" / "a.png", (0, 0, 0))  # hidden: not a split, not a class
    root = tmp_path / "data"

    folder = prepare_folder(source, "given", root, image_size=SIZE, split_seed=5, verbose=False)

    assert folder == root / "given" / str(SIZE)  # given splits do not depend on the split seed
    manifest = read_manifest(folder)
    assert (manifest.split_scheme, manifest.split_seed) == ("given", 0)
    assert manifest.extra["layout"] == "splits" and manifest.extra["fractions"] is None
    assert manifest.splits["train"].classes == ["train_0", "train_1", "train_2", "train_3"]
    assert manifest.splits["val"].classes == [] and rows(folder, "val").shape == (0, SIZE, SIZE, 3)
    assert manifest.splits["test"].classes == ["test_0", "test_1", "test_2"]
    test = rows(folder, "test")
    assert test.shape == (9, SIZE, SIZE, 3)
    assert tuple(test[3, 0, 0]) == colour(1 + 10, 0)  # test_1's first image
    # the same variant is found whatever split seed a run uses, and the command names the folder
    assert get_tasksets("given", 3, 1, 2, root=root, image_size=SIZE, options=DataOptions(split_seed=7)).val is None
    assert prepare_command("given", root, SIZE, split_seed=7) == (
        f"python scripts/prepare_data.py dataset=folder source={source.resolve()} name=given data.root={root} "
        f"image_size={SIZE}"
    )


def test_layout_detection_and_override(tmp_path):
    mixed = tmp_path / "mixed"
    class_tree(mixed, num_classes=4)
    save(mixed / "test" / "0.png", (1, 2, 3))  # a class that happens to be called "test"
    root = tmp_path / "data"
    one_line_error(lambda: prepare_folder(mixed, "m", root, SIZE, verbose=False),
                   r"mixes split folders \(test\) with other folders .*or pass layout=classes")
    folder = prepare_folder(mixed, "m", root, SIZE, layout="classes", verbose=False)
    assert "test" in [c for s in SPLITS for c in read_manifest(folder).splits[s].classes]
    assert "layout=classes" in prepare_command("m", root, 16)  # auto would fail on this tree
    classes = tmp_path / "classes"
    class_tree(classes, num_classes=4)
    one_line_error(lambda: prepare_folder(classes, "c", root, SIZE, layout="splits", verbose=False),
                   r"layout=splits, but .* has folders other than train/val/test")
    one_line_error(lambda: prepare_folder(classes, "c", root, SIZE, layout="columns", verbose=False),
                   r"layout='columns' is not one of auto, classes, splits")


# ============================================================================
# the name used everywhere
# ============================================================================
def test_a_folder_dataset_mixes_with_a_synthetic_mode(tmp_path, mixed_root):
    source = tmp_path / "src"
    class_tree(source)
    prepare_folder(source, "mine", mixed_root, image_size=DATA_SYNTHETIC_SIZE, verbose=False)

    assert resolve_names(["synthetic_glyphs", "mine"], mixed_root) == ["synthetic_glyphs", "mine"]
    assert "mine" in known_names(mixed_root) and "mine" not in known_names()
    one_line_error(lambda: resolve_names(["synthetic_glyphs", "mine"]), r"unknown dataset 'mine'")
    assert get_spec("mine", mixed_root).source == source.resolve()

    tasksets = get_tasksets(["synthetic_glyphs", "mine"], ways=3, shots=1, queries=2, root=mixed_root,
                            image_size=DATA_SYNTHETIC_SIZE, seed=0, verbose=False)
    for sampler in tasksets:
        assert sampler.mode_names == ["synthetic_glyphs", "mine"]
    batch = tasksets.train.sample(4)
    assert batch.support.shape == (4, 3, 3, DATA_SYNTHETIC_SIZE, DATA_SYNTHETIC_SIZE)
    assert batch.query.shape == (4, 6, 3, DATA_SYNTHETIC_SIZE, DATA_SYNTHETIC_SIZE)
    assert batch.task_modes == ["synthetic_glyphs", "mine", "synthetic_glyphs", "mine"]
    palette = {colour(c, i) for c in range(20) for i in range(5)}
    for task in (1, 3):  # the folder's tasks show its (constant-colour) images
        for image in torch.cat([batch.support[task], batch.query[task]]):
            pixels = (image * 255).round().to(torch.int64).reshape(3, -1)
            assert (pixels == pixels[:, :1]).all()
            assert min(np.abs(np.asarray(p) - pixels[:, 0].numpy()).max() for p in palette) <= 2
    for task in (0, 2):  # the glyphs are not
        assert batch.support[task].std() > 0.05
    (train,) = load_modes("mine", "train", mixed_root, DATA_SYNTHETIC_SIZE, verbose=False)
    assert train.name == "mine" and train.class_names == read_manifest(mixed_root / "mine" / "16").splits[
        "train"].classes


def test_training_and_evaluation_on_a_mixture_with_the_folder_dataset(tmp_path, mixed_root, compose):
    from kml.engine.runs import evaluate_run, run_training

    source = tmp_path / "src"
    split_tree(source, {"train": 4, "val": 3, "test": 3})
    prepare_folder(source, "mydata", mixed_root, image_size=DATA_SYNTHETIC_SIZE, verbose=False)
    cfg = compose(["learner=protonet", "modulation=none", f"data.root={mixed_root}", *TINY, "train.iterations=2",
                   "mode.name=mine", "mode.datasets=[synthetic_glyphs,mydata]"])
    run_dir = tmp_path / "run"
    results = run_training(cfg, run_dir, log=lambda *a: None)
    assert list(results["per_mode"]) == ["synthetic_glyphs", "mydata"]
    assert all(entry["tasks"] == 4 for entry in results["per_mode"].values())
    assert json.loads((run_dir / "results.json").read_text())["per_mode"] == json.loads(
        json.dumps(results["per_mode"]))
    again = evaluate_run(run_dir, device="cpu", progress=False, log=lambda *a: None)
    assert again["per_mode"] == results["per_mode"]


def test_prepare_script_and_preparing_the_name_again(tmp_path):
    from kml.cli import prepare as script

    source = tmp_path / "src"
    counts = class_tree(source, num_classes=10)
    root = tmp_path / "data"

    def run(**options):
        return script.run(OmegaConf.create({"data": {"root": str(root)}, "verbose": False, **options}))

    done = run(dataset="folder", source=str(source), name="birds", image_size=SIZE, train_fraction=0.6)
    assert done == {"birds": root / "birds" / str(SIZE)}
    first = read_manifest(done["birds"])
    assert first.extra["fractions"]["train"] == 0.6
    # the name alone prepares it again, at another size, from the recorded source and fractions
    bigger = run(dataset="birds", image_size=12)
    manifest = read_manifest(bigger["birds"])
    assert manifest.image_size == 12 and manifest.extra == first.extra
    assert [manifest.splits[s].classes for s in SPLITS] == [first.splits[s].classes for s in SPLITS]
    assert prepare_dataset("birds", root, 12, verbose=False) == bigger["birds"]  # already there
    assert sum(first.splits[s].num_images for s in SPLITS) == sum(counts.values())
    one_line_error(lambda: run(dataset="folder", source=str(source), image_size=SIZE),
                   r"dataset=folder needs name=; run: python scripts/prepare_data.py dataset=folder source=<folder>")
    one_line_error(lambda: run(dataset="folder", name="x"), r"dataset=folder needs source=")
    one_line_error(lambda: run(dataset="cub", name="x"), r"name= only goes with dataset=folder")
    one_line_error(lambda: run(dataset="folder", source=str(source), name="x", split="lake"),
                   r"split=lake does not apply to dataset=folder")


def test_prepare_script_command_line(tmp_path):
    import os
    import subprocess
    import sys

    def prepare(*args):
        return subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"),
                               *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))

    class_tree(tmp_path / "images", num_classes=8)
    proc = prepare("dataset=folder", "source=images", "name=mydata", "data.root=prepared", f"image_size={SIZE}",
                   "train_fraction=0.5", "val_fraction=0.25", "split_seed=2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"mydata: {Path('prepared') / 'mydata' / f'{SIZE}-seeded-seed2'}"
    manifest = read_manifest(tmp_path / "prepared" / "mydata" / f"{SIZE}-seeded-seed2")
    assert [len(manifest.splits[s].classes) for s in SPLITS] == [4, 2, 2] and manifest.split_seed == 2
    # too few classes for the default 5-way task: one warning line names the splits
    assert [line for line in proc.stderr.splitlines() if "warning" in line] == [
        "warning: mydata: the train, val and test splits have fewer than 5 classes (train / val / test: 4 / 2 / 2), "
        "so they cannot form a 5-way task; use episode.ways=<at most that many> with this dataset, or add class folders"
    ]
    # one class of five images: no task can ever be drawn, refused before anything is written
    class_tree(tmp_path / "single", num_classes=1, base_count=5)
    proc = prepare("dataset=folder", "source=single", "name=single", "data.root=prepared", f"image_size={SIZE}")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "error: single would have a single train class (train / val / test: 1 / 0 / 0 classes), but a few-shot "
        "task needs at least 2; add class folders (one per class) to the source, or give it more classes for train "
        "(train_fraction=)"
    ]
    assert not (tmp_path / "prepared" / "single").exists()
    proc = prepare("dataset=folder", "source=nowhere", "name=other", "data.root=prepared")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: source nowhere does not exist; pass source=<the folder of your images> (one folder per class)"
    ]
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [".locks", "mydata"]


# ============================================================================
# errors: one line naming the problem and the fix, nothing half-written
# ============================================================================
def test_bad_sources_are_refused_before_anything_is_written(tmp_path):
    root = tmp_path / "data"

    def attempt(source, match, **options):
        one_line_error(lambda: prepare_folder(source, "mine", root, SIZE, verbose=False, **options), match)
        assert leftovers(root) == []

    attempt(tmp_path / "missing", r"source .*missing does not exist; pass source=<the folder of your images>")
    (tmp_path / "file.zip").write_bytes(b"PK")
    attempt(tmp_path / "file.zip", r"is a file, not a folder; extract it")
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    attempt(tmp_path / "empty", r"source .*empty is empty: it holds no class folder with images; put your images in")
    (tmp_path / "splits" / "train").mkdir(parents=True)
    (tmp_path / "splits" / "test").mkdir()
    attempt(tmp_path / "splits", r"is empty: .*train/<class>/")
    hollow = tmp_path / "hollow"
    class_tree(hollow, num_classes=4)
    (hollow / "class_02" / "nothing").mkdir()  # a subfolder without images adds nothing
    for stale in (hollow / "class_02").glob("*.*"):
        stale.unlink()
    (hollow / "class_02" / "labels.txt").write_text("no images here")
    attempt(hollow, r"class folder .*class_02 holds no images \(\.jpg, .*\); add images to it or remove it")
    loose = tmp_path / "loose"
    save(loose / "a.png", (1, 2, 3))
    attempt(loose, r"holds images directly \(a.png, \.\.\.\); put them in one folder per class")
    good = tmp_path / "good"
    class_tree(good, num_classes=4)
    attempt(good, r"train_fraction=1.5 is not a fraction", fractions=(1.5, None))
    attempt(good, r"train_fraction=0.9 and val_fraction=0.2 add up to more than 1", fractions=(0.9, 0.2))
    given = tmp_path / "given"
    split_tree(given, {"train": 3})
    attempt(given, r"has train/val/test folders, whose split is kept as it is; leave out train_fraction",
            fractions=(0.5, None))
    one_line_error(lambda: prepare_folder(good, "mine", good / "prepared", SIZE, verbose=False),
                   r"data.root=.*prepared is the source folder .* or lies inside it")
    assert not (good / "prepared").exists()


def test_a_corrupt_image_is_named_and_leaves_nothing_behind(tmp_path):
    source = tmp_path / "src"
    class_tree(source, num_classes=6)
    broken = source / "class_04" / "01.bad.png"
    broken.write_bytes(b"this is not a png")
    root = tmp_path / "data"
    message = one_line_error(lambda: prepare_folder(source, "mine", root, SIZE, verbose=False),
                             r"corrupted or unreadable image")
    assert repr(str(broken)) in message and "replace or remove that file" in message
    assert leftovers(root) == []  # no dataset folder, no temporary folder
    # a failed preparation with force=true leaves the prepared variant as it was
    broken.unlink()
    folder = prepare_folder(source, "mine", root, SIZE, verbose=False)
    before = (folder / "manifest.json").read_text()
    broken.write_bytes(b"this is not a png")
    one_line_error(lambda: prepare_folder(source, "mine", root, SIZE, force=True, verbose=False), str(broken))
    assert (folder / "manifest.json").read_text() == before
    assert [p.name for p in (root / "mine").iterdir()] == [str(SIZE)]


REFUSED_NAMES = [
    ("cub", r"name=cub is taken by the built-in dataset 'cub'; choose another name"),
    ("Omniglot", r"taken by the built-in dataset 'omniglot'"),
    ("synthetic_glyphs", r"taken by the built-in dataset 'synthetic_glyphs'"),
    ("synthetic", r"taken by the mixture 'synthetic'"),
    ("all", r"name=all is taken by a word with a meaning of its own"),
    ("folder", r"taken by a word"),
    ("downloads", r"taken by a word"),
    ("../up", r"name='../up' is not a safe folder name"),
    ("a/b", r"not a safe folder name"),
    (".hidden", r"not a safe folder name"),
    ("my data", r"not a safe folder name"),
    ("a,b", r"not a safe folder name"),
    ("", r"not a safe folder name"),
]


@pytest.mark.parametrize("name,match", REFUSED_NAMES, ids=[repr(name) for name, _ in REFUSED_NAMES])
def test_names_that_collide_or_are_unsafe_are_refused(tmp_path, name, match):
    source = tmp_path / "src"
    class_tree(source, num_classes=4)
    one_line_error(lambda: prepare_folder(source, name, tmp_path / "data", SIZE, verbose=False), match)
    assert leftovers(tmp_path / "data") == []


def test_a_name_keeps_its_source_unless_forced(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    class_tree(first, num_classes=6)
    class_tree(second, num_classes=8, prefix="other")
    root = tmp_path / "data"
    prepare_folder(first, "mine", root, SIZE, verbose=False)
    prepare_folder(first, "mine", root, 12, verbose=False)
    one_line_error(lambda: prepare_folder(second, "mine", root, SIZE, verbose=False),
                   rf"dataset 'mine' in .* was prepared from {first.resolve()} .*; pass force=true to replace it")
    one_line_error(lambda: prepare_folder(first, "mine", root, SIZE, train_fraction=0.5, verbose=False),
                   r"was prepared .*fractions 0.7/0.15/0.15\); pass force=true")
    folder = prepare_folder(second, "mine", root, SIZE, force=True, verbose=False)
    assert read_manifest(folder).extra["source"] == str(second.resolve())
    assert [p.name for p in (root / "mine").iterdir() if not p.name.startswith(".")] == [str(SIZE)]  # 12 was stale
    (root / "theirs").mkdir()
    (root / "theirs" / "notes.txt").write_text("someone else's folder")
    one_line_error(lambda: prepare_folder(first, "theirs", root, SIZE, verbose=False),
                   r"theirs already exists and is not a prepared folder dataset; choose another name")
    assert sorted(p.name for p in (root / "theirs").iterdir()) == ["notes.txt"]


def test_unprepared_and_unknown_names_name_the_prepare_command(tmp_path):
    source = tmp_path / "src"
    class_tree(source, num_classes=6)
    root = tmp_path / "data"
    prepare_folder(source, "mine", root, SIZE, verbose=False)
    with pytest.raises(NotPreparedError) as info:
        get_tasksets(["mine"], root=root, image_size=16)
    assert str(info.value) == (
        f"dataset 'mine' is not prepared at {root / 'mine' / '16'}; run: python scripts/prepare_data.py "
        f"dataset=folder source={source.resolve()} name=mine data.root={root} image_size=16"
    )
    with pytest.raises(DataError) as info:
        get_tasksets(["mine"], root=root, image_size=SIZE, options=DataOptions(split_seed=3))
    assert f"name=mine data.root={root} image_size={SIZE} split_seed=3" in str(info.value)
    message = one_line_error(lambda: get_tasksets(["omniglot", "yours"], root=root), r"unknown dataset 'yours'")
    assert message.endswith(
        f"known datasets: omniglot, miniimagenet, fc100, cub, aircraft, gtsrb, tinyimagenet, synthetic_glyphs, "
        f"synthetic_textures, synthetic_shapes, synthetic, mine; to use a folder of your own images under this name, "
        f"prepare it first: python scripts/prepare_data.py dataset=folder source=<folder> name=yours data.root={root}"
    )


def test_episode_settings_the_folder_cannot_serve_name_its_class_and_split(tmp_path):
    source = tmp_path / "src"
    split_tree(source, {"train": 3, "val": 2, "test": 3})
    (source / "train" / "train_1" / "02.png").unlink()  # train_1 keeps two images
    root = tmp_path / "data"
    prepare_folder(source, "mine", root, SIZE, verbose=False)
    one_line_error(lambda: get_tasksets("mine", ways=2, shots=1, queries=2, root=root, image_size=SIZE),
                   r"shots \+ queries = 3 but class 'train_1' of split 'train' of mine has only 2 images")
    one_line_error(lambda: get_tasksets("mine", ways=3, shots=1, queries=1, root=root, image_size=SIZE),
                   r"3-way tasks need 3 classes but split 'val' of mine has 2; lower episode.ways")
