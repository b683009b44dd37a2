#!/usr/bin/env python
"""``python scripts/train.py ...``: meta-train and evaluate any method on any mixture.

The same as the ``kml-train`` command (``kml.cli.train.main``); its docstring has examples.
"""

from kml.cli.train import main

if __name__ == "__main__":
    main()
