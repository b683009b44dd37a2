"""A built wheel, installed on its own, runs the console entry points from any folder:
the configs (configs/ of the checkout) ship inside the package as kml/configs and are
found through it. And the layout's rules: kml.config imports without torch, and the
library never imports the command-line package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_engine import TINY as TINY_RUN

REPO = Path(__file__).resolve().parent.parent

# Runs an installed console script with the install target first on the path. An
# editable install of this checkout (the development environment) registers an import
# hook that would otherwise win over the target; it is removed so the wheel's own
# files are the ones imported.
BOOT = """
import runpy, sys
target, script, *args = sys.argv[1:]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, target)
if script == "--where":
    import kml, kml.cli
    print(kml.__file__)
    print(kml.cli.CONFIG_DIR)
    raise SystemExit(0)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""

# the tests' tiny run, with a checkpoint at every iteration (for kml-eval checkpoint=2)
TINY = [*TINY_RUN, "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of this checkout, built and installed (``--no-deps``) into a target folder."""
    root = tmp_path_factory.mktemp("install")
    wheels, target = root / "wheels", root / "target"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("kernel_modulation-*.whl")  # the distribution's name; the package is kml
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    return target


def _run(target: Path, script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run([sys.executable, "-c", BOOT, str(target), script, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def test_the_wheel_holds_the_configs_and_the_entry_points(installed, tmp_path):
    where = _run(installed, "--where", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    module, configs = where.stdout.split()
    assert Path(module).is_relative_to(installed) and Path(configs) == installed / "kml" / "configs"
    for name in ("config.yaml", "eval.yaml", "transference.yaml", "reproduce.yaml", "mode/5mode.yaml",
                 "modulation/kml.yaml", "campaign/synthetic.yaml", "logger/tensorboard.yaml",
                 "hydra/job_logging/kml.yaml"):
        assert (installed / "kml" / "configs" / name).is_file(), name
    assert (installed / "kml" / "py.typed").is_file()  # typed package (PEP 561)
    # the version is written once (kml.__version__) and is the wheel's
    import kml

    assert (installed / f"kernel_modulation-{kml.__version__}.dist-info").is_dir()
    scripts = {p.name for p in (installed / "bin").iterdir()}
    assert {"kml-train", "kml-eval", "kml-compare", "kml-transference", "kml-prepare", "kml-bench",
            "kml-reproduce"} <= scripts


def test_installed_train_eval_and_transference_run_from_any_folder(installed, synthetic_root, tmp_path):
    bin_dir = installed / "bin"
    work = tmp_path / "unrelated"
    work.mkdir()
    train = _run(installed, str(bin_dir / "kml-train"), f"data.root={synthetic_root}", *TINY, "train.iterations=3",
                 "hydra.run.dir=run", cwd=work)
    assert train.returncode == 0, train.stderr
    results = json.loads((work / "run" / "results.json").read_text())
    assert results["iterations"] == {"all": 3} and results["method"] == "MProtoNet+KML"

    evaluated = _run(installed, str(bin_dir / "kml-eval"), "run_dir=run", "checkpoint=2", "progress=false", cwd=work)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((work / "run" / "eval_2_test.json").read_text())["checkpoint_iterations"] == {"all": 2}

    transference = _run(installed, str(bin_dir / "kml-transference"), "run_dirs=[run]", "checkpoints=[3]",
                        "sources=3", "progress=false", "output_dir=tr", cwd=work)
    assert transference.returncode == 0, transference.stderr
    record = json.loads((work / "tr" / "transference.json").read_text())
    assert len(record["runs"][0]["checkpoints"][0]["lr"]) == 3

    # a wheel has no scripts/: its messages name the console scripts
    missing = _run(installed, str(bin_dir / "kml-train"), "mode=omniglot", "data.root=nothing", *TINY,
                   "hydra.run.dir=run2", cwd=work)
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith("run: kml-prepare dataset=omniglot data.root=nothing image_size=16")


def test_the_wheel_ships_every_config_and_every_package_of_the_checkout(installed):
    """configs/ of the checkout becomes kml/configs of the wheel, file for file, and every
    package (a folder of kml/ with an __init__.py) is installed."""
    configs = sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.yaml"))
    shipped = sorted(str(p.relative_to(installed / "kml" / "configs"))
                     for p in (installed / "kml" / "configs").rglob("*.yaml"))
    assert configs and shipped == configs
    packages = sorted(str(p.parent.relative_to(REPO)) for p in (REPO / "kml").rglob("__init__.py"))
    missing = [package for package in packages if not (installed / package / "__init__.py").is_file()]
    assert not missing, f"packages missing from the wheel (pyproject.toml's packages list): {missing}"


def test_the_config_package_imports_without_torch():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = "import sys, kml.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_library_never_imports_the_command_line_package():
    """Layers depend only downward: kml.cli uses the library, never the other way round."""
    import ast

    offenders = []
    for path in (REPO / "kml").rglob("*.py"):
        if path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.relative_to(REPO)}: {name}" for name in names
                          if name == "kml.cli" or name.startswith("kml.cli.")]
    assert not offenders


def test_the_citation_names_this_version_and_its_release_date():
    """CITATION.cff's version is kml.__version__, released on the date its CHANGELOG.md heading gives."""
    import re

    import yaml

    import kml

    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["version"] == kml.__version__
    heading = re.search(rf"^## {re.escape(kml.__version__)} \((\d{{4}}-\d{{2}}-\d{{2}})\)$",
                        (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert heading, f"CHANGELOG.md has no '## {kml.__version__} (<date>)' heading"
    assert str(citation["date-released"]) == heading.group(1)
