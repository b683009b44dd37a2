"""Messages name the command the user has: ``kml-train ...`` when run as a console
script, ``python scripts/train.py ...`` from a checkout (kml.commands.command)."""

from __future__ import annotations

import io
import os
import signal
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from fixtures_engine import TINY
from reliability_support import cli

import kml.commands
from kml.commands import COMMANDS, command, command_of_config

REPO = Path(__file__).resolve().parent.parent

#: every command's two forms: (name, console script, checkout script)
FORMS = [
    ("train", "kml-train", "scripts/train.py"),
    ("eval", "kml-eval", "scripts/eval.py"),
    ("compare", "kml-compare", "scripts/compare.py"),
    ("transference", "kml-transference", "scripts/transference.py"),
    ("prepare", "kml-prepare", "scripts/prepare_data.py"),
    ("bench", "kml-bench", "scripts/bench.py"),
    ("reproduce", "kml-reproduce", "scripts/reproduce.py"),
]


def test_the_seven_commands_exist_in_both_forms():
    assert sorted(COMMANDS) == sorted(name for name, _, _ in FORMS)
    pyproject = (REPO / "pyproject.toml").read_text()
    for _, console, script in FORMS:
        assert f'\n{console} = "kml.cli.' in pyproject  # installed as a console script
        assert (REPO / script).is_file()  # a wrapper in the checkout


@pytest.mark.parametrize("name, console, script", FORMS)
def test_a_console_script_names_the_console_form_and_a_script_the_script_form(name, console, script):
    # started as any of the seven console scripts, every command is named in that form
    assert command(name, argv0="/home/me/.venv/bin/kml-train") == console
    assert command(name, argv0=f"/opt/venv/bin/{console}") == console
    # started as a checkout's script (relative, absolute, torchrun's worker), the script form
    assert command(name, argv0="scripts/train.py") == f"python {script}"
    assert command(name, argv0=str(REPO / "scripts" / "reproduce.py")) == f"python {script}"


def test_any_other_start_follows_the_installation(monkeypatch):
    """Your own code or a notebook: a checkout's script where there is a checkout, else
    the console script (a wheel has no scripts/)."""
    for argv0 in ("/usr/lib/python3/site-packages/ipykernel_launcher.py", "my_experiment.py", "-c", ""):
        assert command("train", argv0=argv0) == "python scripts/train.py"  # the tests run from a checkout
    monkeypatch.setattr(kml.commands, "_checkout_scripts", lambda: False)
    for argv0 in ("/usr/lib/python3/site-packages/ipykernel_launcher.py", "my_experiment.py", "-c", ""):
        assert command("prepare", argv0=argv0) == "kml-prepare"
    assert command("prepare", argv0="scripts/prepare_data.py") == "python scripts/prepare_data.py"
    assert command_of_config("config", argv0="/x/bin/kml-train") == "kml-train"
    assert command_of_config("prepare_data", argv0="scripts/prepare_data.py") == "python scripts/prepare_data.py"


def _run_console(main, argv0: str, *args: str, cwd: Path) -> tuple[int, str]:
    """``main()`` as the console script ``argv0`` would run it; (exit code, stderr)."""
    argv, old_cwd = sys.argv, os.getcwd()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    full_error = os.environ.pop("HYDRA_FULL_ERROR", None)
    err, code = io.StringIO(), 0
    try:
        os.chdir(cwd)
        sys.argv = [argv0, *args]
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            try:
                main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
        os.chdir(old_cwd)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if full_error is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    return code, err.getvalue()


def test_the_not_prepared_message_names_kml_prepare_or_the_script(tmp_path):
    from kml.cli.train import main

    root = tmp_path / "data"
    args = ["mode=omniglot", f"data.root={root}", *TINY, "hydra.run.dir=run"]
    code, err = _run_console(main, str(tmp_path / "venv" / "bin" / "kml-train"), *args, cwd=tmp_path)
    assert code == 1
    assert err.splitlines() == [f"error: dataset 'omniglot' is not prepared at {root}/omniglot/16; run: "
                                f"kml-prepare dataset=omniglot data.root={root} image_size=16"]

    script = cli("train.py", *args, cwd=tmp_path)
    assert script.code == 1
    assert script.err.splitlines() == [
        f"error: dataset 'omniglot' is not prepared at {root}/omniglot/16; run: "
        f"python scripts/prepare_data.py dataset=omniglot data.root={root} image_size=16"]


def test_kml_eval_names_its_own_form(tmp_path):
    from kml.cli.eval import main

    code, err = _run_console(main, "/venv/bin/kml-eval", cwd=tmp_path)
    assert (code, err.strip()) == (1, "error: run_dir is required: kml-eval run_dir=<a run directory of kml-train>")
    script = cli("eval.py", cwd=tmp_path)
    assert (script.code, script.err.strip()) == (
        1, "error: run_dir is required: python scripts/eval.py run_dir=<a run directory of python scripts/train.py>")
