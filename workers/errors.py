"""Errors of the queue side. They share rnnq's one base (rnn_tasks.errors.RnnqError), so
the CLI group catches every user error once and prints one line."""

from __future__ import annotations

from rnn_tasks.errors import ConfigError, InputError, RnnqError

__all__ = ["ConfigError", "InvalidJob", "JobNotFound", "RedisUnavailable", "RnnqError", "UploadFailed"]


class RedisUnavailable(RnnqError):
    """Redis (broker and job store) cannot be reached."""


class JobNotFound(RnnqError):
    """No job with that id or name."""


class InvalidJob(InputError):
    """A submitted job or its input data is invalid; nothing was queued."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class UploadFailed(RnnqError):
    """Input data could not be stored in the artifact store (unreadable, disk full); nothing was queued."""
