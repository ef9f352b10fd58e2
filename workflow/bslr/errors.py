"""Errors a user can fix: the command line prints their message alone, without a traceback."""


class ConfigError(ValueError):
    """A configuration that cannot be run; the message says which key, which value and the fix."""


class DataError(RuntimeError):
    """A data set that is missing or unreadable; the message names the path and the fix."""


class RunFileError(RuntimeError):
    """A per-run Parquet that is corrupt, truncated or not written by bslr."""


class OutOfMemory(RuntimeError):
    """The GPU ran out of memory; the message names the model and batch size and what to change."""


class Interrupted(RuntimeError):
    """SIGTERM or SIGUSR1 (a scheduler's time limit or preemption) arrived during training."""


class ModelError(RuntimeError):
    """A model that cannot be built or trained as declared; the message names the entry and the fix."""
