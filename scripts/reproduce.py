#!/usr/bin/env python
"""``python scripts/reproduce.py ...``: run a campaign, keep its records, write the results report.

The same as the ``kml-reproduce`` command (``kml.cli.reproduce.main``); its docstring has examples.
"""

from kml.cli.reproduce import main

if __name__ == "__main__":
    main()
