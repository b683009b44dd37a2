"""``scripts/prepare_data.py``: the Hydra entry point, its config and its error handling."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_data import DATA_SYNTHETIC_SIZE
from omegaconf import OmegaConf

from kml.config import PrepareDataConfig, resolve_prepare_config
from kml.data import DataError, read_manifest
from kml.errors import KmlError

REPO = Path(__file__).resolve().parents[1]


def prepare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prepare_data.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


def test_config_schema():
    cfg = resolve_prepare_config({"dataset": "cub", "image_size": "32", "data": {"root": "/x"}})
    assert isinstance(cfg, PrepareDataConfig) and cfg.image_size == 32 and cfg.data.root == "/x"
    assert cfg.split is None and cfg.download is True and cfg.force is False
    with pytest.raises(DataError, match="no dataset given; run: python scripts/prepare_data.py dataset=<name>"):
        resolve_prepare_config({})
    with pytest.raises(DataError, match="invalid prepare_data config"):
        resolve_prepare_config({"dataset": "cub", "image_size": "big"})
    with pytest.raises(DataError, match="invalid prepare_data config"):
        resolve_prepare_config({"dataset": "cub", "colour": "red"})


def test_unknown_dataset_exits_non_zero_with_one_clear_line(tmp_path):
    proc = prepare("dataset=imagenet", f"data.root={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: unknown dataset 'imagenet'; known datasets: omniglot, miniimagenet")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even Hydra's outputs/


def test_prepare_from_source_then_idempotent(tmp_path, data_builders, script, capsys):
    archive = data_builders.cifar100(tmp_path / "src")
    proc = prepare("dataset=fc100", f"source={archive}", "data.root=prepared", "image_size=12", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "prepared" / "fc100" / "12"
    assert proc.stdout.strip() == f"fc100: {Path('prepared') / 'fc100' / '12'}"
    assert "prepare fc100 (12px)" in proc.stderr  # the progress bar
    manifest = read_manifest(folder)
    assert [len(manifest.splits[s].classes) for s in ("train", "val", "test")] == [60, 20, 20]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "src"]  # no Hydra outputs/
    cfg = {"dataset": "fc100", "source": str(archive), "data": {"root": str(folder.parents[1])}, "image_size": 12}
    again = script.run(OmegaConf.create(cfg))
    assert again == {"fc100": folder} and "already prepared" in capsys.readouterr().err


@pytest.fixture
def script():
    """The module behind ``scripts/prepare_data.py`` (its ``run(cfg)``, without Hydra's start-up)."""
    from kml.cli import prepare

    return prepare


def test_dataset_all_prepares_everything_found(tmp_path, data_builders, data_synthetic_root, script, capsys):
    data_builders.cifar100(tmp_path / "downloads-by-hand" / "cifar")
    data_builders.aircraft(tmp_path / "downloads-by-hand" / "aircraft")
    root = tmp_path / "data"
    for name in ("synthetic_glyphs", "synthetic_textures", "synthetic_shapes"):  # already generated: reused
        shutil.copytree(data_synthetic_root / name, root / name)
    done = script.run(OmegaConf.create({
        "dataset": "all", "source": str(tmp_path / "downloads-by-hand"), "data": {"root": str(root)},
        "image_size": DATA_SYNTHETIC_SIZE,
    }))  # fmt: skip
    assert set(done) == {"fc100", "aircraft", "synthetic_glyphs", "synthetic_textures", "synthetic_shapes"}
    err = capsys.readouterr().err
    for skipped in ("omniglot", "miniimagenet", "cub", "gtsrb", "tinyimagenet"):
        assert f"{skipped}: not found, skipped" in err
    assert read_manifest(root / "aircraft" / str(DATA_SYNTHETIC_SIZE)).splits["train"].counts == [2] * 70


def test_bad_source_message(tmp_path, script):
    cfg = {"dataset": "gtsrb", "source": str(tmp_path / "missing.zip"), "data": {"root": str(tmp_path)}}
    with pytest.raises(KmlError, match=r"does not exist; pass source=<the GTSRB \(traffic signs\) archive or its"):
        script.run(OmegaConf.create(cfg))
