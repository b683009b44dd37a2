#!/usr/bin/env python
"""``python scripts/bench.py ...``: benchmark meta-training and evaluation speed.

The same as the ``kml-bench`` command (``kml.cli.bench.main``); its docstring has examples.
"""

from kml.cli.bench import main

if __name__ == "__main__":
    main()
