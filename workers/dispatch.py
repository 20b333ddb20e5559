"""Sending a job's message: one place for submit, hand-back and the reaper."""

from __future__ import annotations

from functools import cache

from celery import Celery


@cache
def _app() -> Celery:
    from workers.app import app

    return app


def send_job(job_id: str, kind: str, queue: str, app: Celery | None = None) -> None:
    """Enqueue the job by task name; the message carries only the job id (JSON)."""
    (app or _app()).send_task(
        f"rnnq.{kind}", args=[job_id], queue=queue, task_id=job_id, retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1},
    )
