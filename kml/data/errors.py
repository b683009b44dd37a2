"""The data package's user error."""

from kml.errors import KmlError


class DataError(KmlError):
    """A data problem the user can fix (unprepared dataset, bad archive, bad
    episode settings, ...). The message names the problem and the fix."""
