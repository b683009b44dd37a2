"""Deprecated: the import path of kml 0.1 for :mod:`kml.analysis.diagnostics`. Import from
:mod:`kml.analysis.diagnostics`; this module goes in the next minor version."""

import warnings

from kml.analysis.diagnostics import *  # noqa: F403
from kml.analysis.diagnostics import __all__  # noqa: F401

warnings.warn("kml.analysis.modulation is deprecated: import from kml.analysis.diagnostics", DeprecationWarning,
              stacklevel=2)
