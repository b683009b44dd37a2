"""The real datasets, one module each (see each module's docstring)."""

from kml.data.datasets.aircraft import SPEC as AIRCRAFT
from kml.data.datasets.base import ClassListing, DatasetSpec
from kml.data.datasets.cub import SPEC as CUB
from kml.data.datasets.fc100 import SPEC as FC100
from kml.data.datasets.gtsrb import SPEC as GTSRB
from kml.data.datasets.miniimagenet import SPEC as MINIIMAGENET
from kml.data.datasets.omniglot import SPEC as OMNIGLOT
from kml.data.datasets.tinyimagenet import SPEC as TINYIMAGENET

REAL_SPECS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (OMNIGLOT, MINIIMAGENET, FC100, CUB, AIRCRAFT, GTSRB, TINYIMAGENET)
}

__all__ = ["REAL_SPECS", "ClassListing", "DatasetSpec"]
