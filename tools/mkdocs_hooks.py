"""mkdocs hook of the documentation site (``hooks:`` in mkdocs.yml).

The docstrings cross-reference in Sphinx's roles (``:class:`~kml.modulation.FiLM```), which
read well in ``help()`` and in an editor; mkdocstrings renders them literally, as
``:class:`` before the code. This hook shows each such reference as its code: the full
dotted name, or with ``~`` only its last part, as Sphinx does.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj|py:\w+):<code>(~?)([^<]*)</code>")


def on_page_content(html: str, **_) -> str:
    """The page's HTML with every rendered Sphinx role replaced by its code."""
    return ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html)
