#!/usr/bin/env python
"""``python scripts/compare.py ...``: compare runs (accuracy table and paired differences).

The same as the ``kml-compare`` command (``kml.cli.compare.main``); its docstring has examples.
"""

from kml.cli.compare import main

if __name__ == "__main__":
    main()
