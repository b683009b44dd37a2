#!/usr/bin/env python
"""``python scripts/prepare_data.py ...``: download or read, and preprocess, a dataset.

The same as the ``kml-prepare`` command (``kml.cli.prepare.main``); its docstring has examples.
"""

from kml.cli.prepare import main

if __name__ == "__main__":
    main()
