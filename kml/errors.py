"""Errors shared by every part of :mod:`kml`.

:class:`KmlError` is a *user* error: something about the input (a config value,
a missing prepared dataset, a corrupt archive, ...) that the user can fix. Its
message is one line naming the problem and the fix. Entry-point scripts catch
it at the top level, print the message and exit with a non-zero status; any
other exception is a bug and keeps its traceback.
"""


class KmlError(Exception):
    """A user error with a one-line message naming the problem and the fix."""


class DataError(KmlError):
    """A data problem the user can fix (unprepared dataset, bad archive, bad
    episode settings, ...). The message names the problem and the fix.

    Defined here, with the other shared errors, so that the config schemas can raise it
    without importing the data package; :mod:`kml.data.errors` exports it too."""
