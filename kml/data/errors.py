"""The data package's user errors: :class:`DataError` (shared, from :mod:`kml.errors`) and
:class:`NotPreparedError`."""

from kml.errors import DataError

__all__ = ["DataError", "NotPreparedError"]


class NotPreparedError(DataError):
    """A real dataset is not prepared; ``command`` prepares it."""

    def __init__(self, message: str, name: str, command: str) -> None:
        super().__init__(message)
        self.name = name
        self.command = command
