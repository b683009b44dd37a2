"""Deprecated: the import path of kml 0.1 for :mod:`kml.recipes` (importable without torch,
so that the run-config schema can read it). Import from :mod:`kml.recipes`; this module goes
in the next minor version."""

import warnings

from kml.recipes import *  # noqa: F403
from kml.recipes import __all__, plain  # noqa: F401

warnings.warn("kml.learners.recipes is deprecated: import from kml.recipes", DeprecationWarning, stacklevel=2)
