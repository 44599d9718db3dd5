"""Errors raised when a dataset folder does not follow the Sensorium 2023 layout."""


class DataFormatError(ValueError):
    """A file of a session folder is missing, unreadable or mis-shaped.

    The message always names the file and what was expected of it.
    """
