"""The data package's user error."""

from kml.errors import KmlError


class DataError(KmlError):
    """A data problem the user can fix (unprepared dataset, bad archive, bad
    episode settings, ...). The message names the problem and the fix."""


class NotPreparedError(DataError):
    """A real dataset is not prepared; ``command`` prepares it."""

    def __init__(self, message: str, name: str, command: str) -> None:
        super().__init__(message)
        self.name = name
        self.command = command
