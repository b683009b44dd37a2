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


def test_the_hash_changes_with_the_arrays_and_used_counts_follow_dropped_classes(synthetic_root, tmp_path):
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
    assert all("used" not in s for s in record["synthetic_shapes"]["splits"].values())
