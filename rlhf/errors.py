"""User-facing errors: each names the bad value and the fix; entry points print them as one line."""


class RlhfError(Exception):
    """Base class for errors caused by user input (config, data, paths), not by bugs."""


class ConfigError(RlhfError):
    """A config value is unknown, out of range or inconsistent."""


class DataError(RlhfError):
    """A data file is missing, unreadable or malformed."""


class ModelLoadError(RlhfError):
    """Weights or a tokenizer could not be loaded from where the config points."""


class NumericError(RlhfError):
    """Too many updates in a row had a NaN/inf loss, reward or gradient norm (each one was skipped)."""


class StorageError(RlhfError):
    """A file of the run could not be written: the disk is full or read-only, or permissions forbid it."""
