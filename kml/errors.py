"""Errors shared by every part of :mod:`kml`.

:class:`KmlError` is a *user* error: something about the input (a config value,
a missing prepared dataset, a corrupt archive, ...) that the user can fix. Its
message is one line naming the problem and the fix. Entry-point scripts catch
it at the top level, print the message and exit with a non-zero status; any
other exception is a bug and keeps its traceback.
"""


class KmlError(Exception):
    """A user error with a one-line message naming the problem and the fix."""


#: the distribution's name on the package index: optional parts install as its extras,
#: ``pip install "kernel-modulation[<extra>]"`` (the import name is ``kml``)
DISTRIBUTION = "kernel-modulation"


class MissingExtraError(KmlError):
    """An optional part of kml is used without the extra that installs it.

    Args:
        feature: what was asked for (``logger=tensorboard``).
        needs: what is missing (``the tensorboard package``).
        extra: the extra that installs it (``tensorboard``).
    """

    def __init__(self, feature: str, needs: str, extra: str) -> None:
        super().__init__(
            f'{feature} needs {needs}, which is not installed; install it with: pip install "{DISTRIBUTION}[{extra}]"'
        )


class DataError(KmlError):
    """A data problem the user can fix (unprepared dataset, bad archive, bad
    episode settings, ...). The message names the problem and the fix.

    Defined here, with the other shared errors, so that the config schemas can raise it
    without importing the data package; :mod:`kml.data.errors` exports it too."""
