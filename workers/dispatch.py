"""Sending a job's message: one place for submit, hand-back and the reaper.

It never imports workers.app (which imports this module's callers): the CLI passes the
app it built from its own settings (`--redis-url`), and a worker process registers its
app with `use()` when workers.app loads. Celery itself is imported only here, where a
message is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

_default: Celery | None = None  # the worker's app, registered by workers.app


def use(app: Celery) -> None:
    """Make `app` the one that send_job uses when given none (done once, by workers.app)."""
    global _default
    _default = app


def _app() -> Celery:
    global _default
    if _default is None:  # a process that did not load workers.app: an app from the settings
        from workers.celeryconf import make_app

        _default = make_app()
    return _default


def send_job(job_id: str, kind: str, queue: str, app: Celery | None = None) -> None:
    """Enqueue the job by task name; the message carries only the job id (JSON)."""
    (app or _app()).send_task(
        f"rnnq.{kind}", args=[job_id], queue=queue, task_id=job_id, retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1},
    )
