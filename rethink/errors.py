"""The one base of every error a user can fix (a bad name, value, file or checkpoint): `rethink` prints it as
one line and exits 2. Kept free of heavy imports, so the command line can catch it without loading torch."""


class UserError(ValueError):
    """Bad input; the message names the field, file or value and says how to fix it."""


class ConfigError(UserError):
    """A training config or runtime field out of range; the message names the field."""


class DataError(UserError):
    """Bad dataset name, missing files or malformed arrays; the message says how to fix it."""
