"""The documentation site builds without a warning (mkdocs --strict): every page, every
link and anchor, and the API reference generated from the docstrings, rendered cleanly.
The README is the short first screen that links to it."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: the pages a new user reads first
GUIDES = ("getting-started", "experiments", "run-directory", "logging", "inference", "troubleshooting", "campaigns")


def test_the_documentation_site_builds_strictly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (tmp_path / "site" / "api" / "layers" / "index.html").read_text()
    assert "KernelModulatedConv2d" in api and "task_dim" in api  # generated from the docstrings
    assert (tmp_path / "site" / "results" / "index.html").is_file()
    for page in GUIDES:
        assert (tmp_path / "site" / page / "index.html").is_file(), page
    # docstrings render cleanly: no reST literal-block markers, no raw Sphinx roles
    for path in (tmp_path / "site" / "api").rglob("*.html"):
        html = path.read_text()
        assert "::</p>" not in html, path
        assert not re.search(r":(mod|class|func|meth|attr|data|exc|obj):<code>", html), path
    assert 'class="gp">&gt;&gt;&gt; </span>' in api  # the layer's doctest is a highlighted example


def test_the_readme_is_a_first_screen_that_links_to_the_site():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    # the two commands (CI runs `make test` from the README), then the one-minute check
    assert readme.index("```bash\nmake run\n```") < readme.index("```bash\nmake test\n```") < readme.index("debug=fast")
    for page in GUIDES:
        assert f"(docs/{page}.md)" in readme, page
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).is_file(), link
