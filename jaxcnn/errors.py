"""Errors a user sees: one line that names the file and the problem."""


class JaxcnnError(Exception):
    """Base class for errors reported to the user without a traceback."""


class DataError(JaxcnnError):
    """Bad input data: corrupt image, wrong layout, missing class, bad archive."""


class CheckpointError(JaxcnnError):
    """A checkpoint that is missing, damaged, or does not fit the model."""
