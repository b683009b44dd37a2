"""The documentation site builds without a warning (mkdocs --strict): every page, every
link and anchor, and the API reference generated from the docstrings."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_documentation_site_builds_strictly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (tmp_path / "site" / "api" / "layers" / "index.html").read_text()
    assert "KernelModulatedConv2d" in api and "task_dim" in api  # generated from the docstrings
    assert (tmp_path / "site" / "results" / "index.html").is_file()
