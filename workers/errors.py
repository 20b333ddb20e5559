"""Errors of the worker layer (job store, stack, submit checks). They derive from
rnn_tasks' one hierarchy, so the CLI group catches a single base class."""

from __future__ import annotations

from rnn_tasks.errors import ConfigError, InputError, RnnqError

__all__ = ["ConfigError", "InvalidJob", "JobNotFound", "RedisUnavailable", "RnnqError", "UploadFailed"]


class RedisUnavailable(RnnqError):
    """Redis (broker and job store) cannot be reached."""


class JobNotFound(RnnqError):
    """No job with that id or name."""


class InvalidJob(InputError):
    """A submitted job or its input data is invalid; nothing was queued.

    `field` is a spec field ("seq_len"), an input ("data") or, from older call sites,
    already a flag ("--input"); the CLI maps it to the flag the user typed.
    """

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)


class UploadFailed(RnnqError):
    """Input data could not be stored in the artifact store (unreadable, disk full); nothing was queued."""
