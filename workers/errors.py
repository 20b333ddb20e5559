"""Errors the CLI turns into one-line messages and exit code 1."""

from __future__ import annotations


class RnnqError(Exception):
    """Base class for errors that reach the user as a single line."""


class RedisUnavailable(RnnqError):
    """Redis (broker and job store) cannot be reached."""


class ConfigError(RnnqError):
    """A setting (flag or RNNQ_* variable) has a value rnnq cannot use."""


class JobNotFound(RnnqError):
    """No job with that id or name."""


class InvalidJob(RnnqError):
    """A submitted job or its input data is invalid; nothing was queued."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UploadFailed(RnnqError):
    """Input data could not be stored in the artifact store (unreadable, disk full); nothing was queued."""
