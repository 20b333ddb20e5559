"""rnnq's one error hierarchy. Every error a user can cause derives from RnnqError and
says which field it concerns (a spec field, an input file, an RNNQ_* variable), so the
CLI group catches it once and prints one line. Messages here name fields, never flags:
the CLI maps fields to its own option names.

Torch-free on purpose: the CLI imports this module.
"""

from __future__ import annotations


class RnnqError(Exception):
    """Base class for errors that reach the user as a single line."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class InputError(RnnqError, ValueError):
    """A job's spec or input data is invalid (raised before anything is queued when it can be)."""


class DataError(InputError):
    """Input data cannot be read or is unusable (too short, undecodable, wrong columns)."""


class CheckpointError(RnnqError, ValueError):
    """A checkpoint is missing, corrupt or of an unsupported format."""


class NumericalError(RnnqError, RuntimeError):
    """The training loss became NaN or infinite."""


class ConfigError(RnnqError):
    """A setting (flag or RNNQ_* variable) has a value rnnq cannot use."""
