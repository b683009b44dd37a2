"""Preparation in general: split rules, manifests, idempotency, atomicity, bad input.

Each reader on its own tiny official-format archive is tested in ``test_data_readers.py``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import kml
from kml.data import DataError, DataOptions, ensure_prepared, get_tasksets, known_names, prepare_dataset, read_manifest
from kml.data.datasets import REAL_SPECS
from kml.data.splits import seeded_class_split, split_sizes


def test_split_sizes_and_seeded_split_are_sorted_and_reproducible():
    assert split_sizes(200) == (140, 30, 30)
    assert split_sizes(100) == (70, 15, 15)
    assert split_sizes(43) == (30, 6, 7)
    names = [f"c{i:03d}" for i in range(100)]
    a, b, c = seeded_class_split(names, 0), seeded_class_split(list(reversed(names)), 0), seeded_class_split(names, 1)
    assert a == b  # input order does not matter
    assert a != c  # the seed does
    assert all(part == sorted(part) for part in a.values())
    assert sorted(a["train"] + a["val"] + a["test"]) == names


def test_fc100_rejects_pickles_that_would_run_code(tmp_path, data_builders):
    import pickle
    import tarfile

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("train", "test", "meta"):
            data_builders.add_tar_bytes(tar, f"cifar-100-python/{name}", pickle.dumps({"x": Evil()}))
    with pytest.raises(DataError, match=r"cannot read CIFAR-100 file .*not allowed"):
        prepare_dataset("fc100", tmp_path / "data", 16, source=archive, verbose=False)
    assert not (tmp_path / "data" / "fc100" / "16").exists()


def test_manifest_records_provenance(tmp_path, data_builders):
    archive = data_builders.cifar100(tmp_path / "src")
    folder = prepare_dataset("fc100", tmp_path / "data", 12, source=archive, verbose=False)
    data = json.loads((folder / "manifest.json").read_text())
    assert data["dataset"] == "fc100" and data["image_size"] == 12 and data["split_scheme"] == "superclass"
    assert data["split_seed"] == 0 and data["kml_version"] == kml.__version__
    assert data["splits"]["train"]["num_images"] == 180 and len(data["splits"]["train"]["counts"]) == 60
    archives = [entry for entry in data["sources"] if entry.get("archive") == "cifar-100-python.tar.gz"]
    assert len(archives) == 1 and len(archives[0]["sha256"]) == 64
    assert {p.name for p in folder.iterdir()} == {"manifest.json", "train.npy", "val.npy", "test.npy"}
    # the usual permissions of a new folder under this umask (not mkdtemp's private 0o700)
    umask = os.umask(0o022)
    os.umask(umask)
    assert oct(folder.stat().st_mode & 0o777) == oct(0o777 & ~umask)
    old = os.umask(0o027)  # and it follows the umask in force when preparing
    try:
        strict = prepare_dataset("fc100", tmp_path / "strict", 12, source=archive, verbose=False)
    finally:
        os.umask(old)
    assert oct(strict.stat().st_mode & 0o777) == oct(0o750)


def test_preparation_is_idempotent_and_force_redoes_it(tmp_path, data_builders):
    archive = data_builders.cifar100(tmp_path / "src")
    folder = prepare_dataset("fc100", tmp_path / "data", 12, source=archive, verbose=False)
    stamp = (folder / "train.npy").stat().st_mtime_ns
    again = prepare_dataset("fc100", tmp_path / "data", 12, source=archive, verbose=False)
    assert again == folder and (folder / "train.npy").stat().st_mtime_ns == stamp
    os.utime(folder / "train.npy", ns=(1, 1))
    prepare_dataset("fc100", tmp_path / "data", 12, source=archive, force=True, verbose=False)
    assert (folder / "train.npy").stat().st_mtime_ns != 1
    assert [p.name for p in (tmp_path / "data" / "fc100").iterdir()] == ["12"]  # no temp folders left


def test_killed_preparation_leaves_nothing_loadable(tmp_path, data_builders, monkeypatch):
    archive = data_builders.aircraft(tmp_path / "src", per_class=2)
    spec = REAL_SPECS["aircraft"]
    calls = {"n": 0}
    original = type(spec).load_item

    def dying(self, tree, item, size):
        calls["n"] += 1
        if calls["n"] == 150:
            raise KeyboardInterrupt  # like a Ctrl-C or a kill in the middle of the train split
        return original(self, tree, item, size)

    monkeypatch.setattr(type(spec), "load_item", dying)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("aircraft", tmp_path / "data", 16, source=archive, workers=1, verbose=False)
    parent = tmp_path / "data" / "aircraft"
    assert not (parent / "16").exists()
    assert [p.name for p in parent.iterdir()] == []
    with pytest.raises(DataError, match="not prepared"):
        ensure_prepared("aircraft", tmp_path / "data", 16)
    # a stale temp folder of a killed run (as after SIGKILL) is never loaded and is cleaned up next time
    stale = parent / ".tmp-16-killed"
    stale.mkdir()
    (stale / "train.npy").write_bytes(b"partial")
    monkeypatch.setattr(type(spec), "load_item", original)
    folder = prepare_dataset("aircraft", tmp_path / "data", 16, source=archive, verbose=False)
    assert folder.exists() and not stale.exists()
    assert sorted(p.name for p in parent.iterdir()) == ["16"]


def test_corrupted_image_is_named_and_nothing_is_written(tmp_path, data_builders):
    archive = data_builders.aircraft(tmp_path / "src", per_class=2, corrupt="1000010")
    with pytest.raises(DataError) as info:
        prepare_dataset("aircraft", tmp_path / "data", 16, source=archive, verbose=False)
    message = str(info.value)
    assert "corrupted or unreadable image" in message and "1000010.jpg" in message and "rerun" in message
    assert not (tmp_path / "data" / "aircraft" / "16").exists()
    assert [p.name for p in (tmp_path / "data" / "aircraft").iterdir()] == []


def test_missing_or_wrong_source(tmp_path, data_builders):
    with pytest.raises(DataError, match=r"source .*does not exist"):
        prepare_dataset("cub", tmp_path / "data", 16, source=tmp_path / "nowhere", verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no CUB-200-2011 files found in .*CUB_200_2011\.tgz"):
        prepare_dataset("cub", tmp_path / "data", 16, source=tmp_path / "empty", verbose=False)
    # the wrong dataset's archive
    data_builders.cifar100(tmp_path / "cifar")
    with pytest.raises(DataError, match=r"FGVC-Aircraft data/variants.txt not found in the source; pass source="):
        prepare_dataset(
            "aircraft", tmp_path / "data", 16, source=tmp_path / "cifar" / "cifar-100-python.tar.gz", verbose=False
        )
    # an Omniglot folder with only one of the two zips
    import zipfile

    (tmp_path / "omni").mkdir()
    with zipfile.ZipFile(tmp_path / "omni" / "images_background.zip", "w") as zf:
        zf.writestr("images_background/Latin/character01/0683_01.png", data_builders.png(np.zeros((8, 8))))
    with pytest.raises(DataError, match=r"no images_evaluation images; pass source=<folder holding both"):
        prepare_dataset("omniglot", tmp_path / "data", 16, source=tmp_path / "omni", verbose=False)


def test_unknown_names_splits_and_sizes(tmp_path):
    with pytest.raises(DataError) as info:
        prepare_dataset("imagenet", tmp_path, 16, verbose=False)
    message = str(info.value)
    assert "unknown dataset 'imagenet'" in message
    for name in ("omniglot", "miniimagenet", "fc100", "cub", "aircraft", "gtsrb", "tinyimagenet", "synthetic"):
        assert name in message
    assert set(known_names()) >= {"synthetic_glyphs", "synthetic_textures", "synthetic_shapes", "synthetic"}
    with pytest.raises(DataError, match=r"unknown dataset 'nope'"):
        get_tasksets(["omniglot", "nope"], root=tmp_path)
    with pytest.raises(DataError, match=r"unknown split 'random' for omniglot; choose one of: vinyals, lake"):
        prepare_dataset("omniglot", tmp_path, 16, split="random", verbose=False)
    with pytest.raises(DataError, match="image_size"):
        prepare_dataset("cub", tmp_path, 2, verbose=False)


def test_unprepared_dataset_names_the_prepare_command(tmp_path):
    with pytest.raises(DataError) as info:
        get_tasksets("cub", root=tmp_path / "data", image_size=84)
    message = str(info.value)
    assert "dataset 'cub' is not prepared" in message
    assert f"python scripts/prepare_data.py dataset=cub data.root={tmp_path / 'data'} image_size=84" in message
    with pytest.raises(DataError) as info:
        get_tasksets("miniimagenet", root=tmp_path, image_size=32)
    assert "source=<folder holding the files>" in str(info.value)
    with pytest.raises(DataError) as info:
        get_tasksets("omniglot", root=tmp_path, image_size=28, options=DataOptions(split_schemes={"omniglot": "lake"}))
    assert "dataset=omniglot" in str(info.value) and "split=lake" in str(info.value)


def test_concurrent_preparations_take_turns(tmp_path):
    """Two processes (e.g. two ranks of a distributed run) generating the same mode at once both succeed."""
    import subprocess
    import sys

    code = (
        "import sys; from kml.data import prepare_dataset; "
        "print(prepare_dataset('synthetic_textures', sys.argv[1], 10, verbose=True))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=os.getcwd())
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    # one generated it; the other found it done (waiting on the lock if they overlapped)
    assert sorted("generated at" in err for _, err in outputs) == [False, True]
    assert sorted("already prepared" in err for _, err in outputs) == [False, True]
    manifest = read_manifest(tmp_path / "synthetic_textures" / "10")
    assert manifest is not None and manifest.splits["train"].num_images == 210 * 20
    assert sorted(p.name for p in (tmp_path / "synthetic_textures").iterdir()) == ["10"]
