#!/usr/bin/env python
"""``python scripts/transference.py ...``: transference LR histograms of saved runs.

The same as the ``kml-transference`` command (``kml.cli.transference.main``); its docstring has examples.
"""

from kml.cli.transference import main

if __name__ == "__main__":
    main()
