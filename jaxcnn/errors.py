"""Errors a user sees: one line that names the file and the problem."""


class JaxcnnError(Exception):
    """Base class for errors reported to the user without a traceback."""


class DataError(JaxcnnError):
    """Bad input data: corrupt image, wrong layout, missing class, bad archive."""


class CheckpointError(JaxcnnError):
    """A checkpoint that is missing, damaged, or does not fit the model."""


class ConfigError(JaxcnnError, ValueError):
    """A config value out of its range, named as ``Class.field``."""


def require(cfg, field: str, ok: bool, rule: str) -> None:
    """Raises ConfigError ``Class.field must be <rule>, got <value>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{type(cfg).__name__}.{field} must be {rule}, got {getattr(cfg, field)!r}")
