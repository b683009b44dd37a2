#!/usr/bin/env python
"""``python scripts/eval.py ...``: evaluate a saved run on fixed, seeded tasks.

The same as the ``kml-eval`` command (``kml.cli.eval.main``); its docstring has examples.
"""

from kml.cli.eval import main

if __name__ == "__main__":
    main()
