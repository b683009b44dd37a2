"""The tree stays ruff-clean: ``ruff check`` with the configuration in pyproject.toml
reports nothing on the whole repository (``make lint`` and the pre-commit hook run
the same check)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ruff_reports_nothing_on_the_tree():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
