"""What a run records about its data: manifest counts, the classes and images its samplers
use, and a content hash of the prepared arrays; and the code of every session."""

import json

from fixtures_engine import TINY

from kml.data import ensure_prepared
from kml.data.provenance import arrays_digest, data_provenance
from kml.engine.runs import run_training


def test_a_run_records_its_data_and_each_sessions_code(compose, synthetic_root, tmp_path):
    common = [*TINY, "mode=synthetic", "modulation=none", f"data.root={synthetic_root}", "train.iterations=2"]
    run_training(compose(common), tmp_path / "run", log=lambda *a: None)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    data = info["data"]
    assert set(data) == {"synthetic_glyphs", "synthetic_textures", "synthetic_shapes"}
    for name, entry in data.items():
        folder = ensure_prepared(name, synthetic_root, 16)
        assert entry["sha256"] == arrays_digest(folder) and len(entry["sha256"]) == 64
        manifest = json.loads((folder / "manifest.json").read_text())
        for split, counts in entry["splits"].items():
            assert counts["classes"] == manifest["splits"][split]["num_classes"]
            assert counts["images"] == manifest["splits"][split]["num_images"]
            assert counts["used"] == {"classes": counts["classes"], "images": counts["images"]}
            assert counts["images_per_class"]["min"] == min(manifest["splits"][split]["counts"])
    assert "git_commit" in info and "resumes" not in info

    resumed = compose([*common, "train.iterations=4", f"resume={tmp_path / 'run'}"])
    run_training(resumed, tmp_path / "run", overrides=["train.iterations=4"], log=lambda *a: None)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert len(info["resumes"]) == 1
    session = info["resumes"][0]
    assert {"started", "git_commit", "git_dirty", "hostname", "data_sha256"} <= set(session)
    assert session["data_sha256"] == {name: entry["sha256"] for name, entry in data.items()}


def test_the_hash_changes_with_the_arrays(synthetic_root, tmp_path):
    import shutil

    folder = ensure_prepared("synthetic_shapes", synthetic_root, 16)
    copy = tmp_path / "synthetic_shapes" / folder.name
    shutil.copytree(folder, copy)
    before = arrays_digest(copy)
    with open(copy / "test.npy", "r+b") as handle:  # one pixel of the last image
        handle.seek(-1, 2)
        value = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([(value[0] + 1) % 256]))
    assert arrays_digest(copy) != before
    record = data_provenance(["synthetic_shapes"], synthetic_root, 16)
    assert record["synthetic_shapes"]["sha256"] == arrays_digest(folder)
    assert record["synthetic_shapes"]["official"] == {"classes": None, "images_per_class": None}


def test_used_counts_leave_out_the_classes_a_mixture_drops(tmp_path, monkeypatch):
    """Tiny-ImageNet's classes that are mini-ImageNet classes are dropped when both are in a
    mixture: the record's used counts say so, and the official sizes label the subsets."""
    import numpy as np

    from kml.data.storage import Manifest, SplitInfo, write_manifest

    def prepare(name, splits):
        folder = tmp_path / name / "8"
        folder.mkdir(parents=True)
        for split, (_, counts) in splits.items():
            np.save(folder / f"{split}.npy", np.zeros((sum(counts), 8, 8, 3), np.uint8))
        write_manifest(folder, Manifest(name, 8, 3, "seeded", 0,
                                        {s: SplitInfo(c, n) for s, (c, n) in splits.items()}))

    prepare("miniimagenet", {"train": (["n1", "n2"], [6, 6]), "val": (["n3"], [4]), "test": (["n4"], [4])})
    prepare("tinyimagenet", {"train": (["n1", "t1", "t2"], [5, 5, 3]), "val": (["n3", "t3"], [5, 5]),
                             "test": (["t4"], [5])})
    monkeypatch.setattr("kml.data.provenance.ensure_prepared", lambda name, root, size, *a, **k: root / name / "8")
    record = data_provenance(["miniimagenet", "tinyimagenet"], tmp_path, 8)
    tiny = record["tinyimagenet"]["splits"]
    assert tiny["train"]["classes"] == 3 and tiny["train"]["used"] == {"classes": 2, "images": 8}
    assert tiny["val"]["used"] == {"classes": 1, "images": 5} and tiny["test"]["used"] == {"classes": 1, "images": 5}
    assert record["miniimagenet"]["splits"]["train"]["used"] == {"classes": 2, "images": 12}
    assert record["miniimagenet"]["official"] == {"classes": 100, "images_per_class": 600}
    assert record["tinyimagenet"]["official"] == {"classes": 200, "images_per_class": 500}
    alone = data_provenance(["tinyimagenet"], tmp_path, 8)
    assert alone["tinyimagenet"]["splits"]["train"]["used"] == {"classes": 3, "images": 13}


def test_the_dirty_flag_is_about_code_not_records(tmp_path, monkeypatch):
    """A campaign rewrites results/ and docs/ between its runs: that is not uncommitted code."""
    import subprocess

    import kml.engine.rundir as rundir

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("kml/x.py", "configs/c.yaml", "results/r.json", "docs/results.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("0\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    real_git = rundir._git
    monkeypatch.setattr(rundir, "_git", lambda *args: real_git(*args, root=tmp_path))
    assert rundir._git_dirty() is False
    (tmp_path / "results/r.json").write_text("1\n")
    (tmp_path / "docs/results.md").write_text("1\n")
    assert rundir._git_dirty() is False
    (tmp_path / "results/new_run.json").write_text("1\n")  # a new record is not code
    assert rundir._git_dirty() is False
    (tmp_path / "kml/sub").mkdir()
    (tmp_path / "kml/sub/new_module.py").write_text("1\n")  # a module never added is code
    assert rundir._git_dirty() is True
    (tmp_path / "kml/sub/new_module.py").unlink()
    assert rundir._git_dirty() is False
    (tmp_path / "configs/c.yaml").write_text("1\n")
    assert rundir._git_dirty() is True
