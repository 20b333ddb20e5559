"""Sending a job's message: one place for submit, hand-back, the reaper and sweeps.

The message is the one Celery's `send_task` publishes (task protocol 2, built by Celery
itself), pushed onto the queue's list through the job store's own Redis connection. A
submit therefore opens one connection, not three (the job store's, and kombu's two
pools: one it pings on connect, one it publishes with). kombu's Redis transport keeps
a queued message as a JSON envelope around the serialised task:

    LPUSH <queue>  {"body": base64(JSON [args, kwargs, embed]),
                    "content-encoding": "utf-8", "content-type": "application/json",
                    "headers": Celery's task headers (task name, id, ...),
                    "properties": {correlation_id, reply_to, delivery_mode: 2,
                                   delivery_info: {exchange: "", routing_key: <queue>},
                                   priority: 0, body_encoding: "base64", delivery_tag}}

which is what task_message() writes, as kombu would for Celery's default direct
exchange (exchange "", routing key = queue: no binding is looked up). A worker
consumes it like any other (tests/integration/test_dispatch.py compares it with
kombu's own). Priority 0 is the plain list; workers.reconcile reads the same lists.

It never imports workers.app (which imports this module's callers): the CLI passes the
app it built from its own settings, and a worker process registers its app with `use()`
when workers.app loads. Celery itself is imported only here, where a message is built.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

    from workers.jobstore import JobStore

_default: Celery | None = None  # the worker's app, registered by workers.app
PERSISTENT = 2  # kombu's delivery_mode for a durable message, what Celery's queues ask for


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


def send_job(store: JobStore, job_id: str, kind: str, queue: str, app: Celery | None = None) -> None:
    """Enqueue the job by task name (the message carries only the job id, JSON) on the
    job store's connection. A lost connection is retried as the store's client retries
    (the CLI's rides out a Redis restart); a send lost anyway is repaired by the
    reconciler (workers.reconcile), and a duplicate is refused when it is delivered."""
    message = task_message(app or _app(), job_id, kind, queue)
    store.call(lambda: store.redis.lpush(queue, message))


def task_message(app: Celery, job_id: str, kind: str, queue: str) -> str:
    """The job's message as kombu's Redis transport stores it on `queue` (see the module
    docstring): Celery's task message for `rnnq.<kind>(job_id)` in kombu's envelope."""
    from kombu.serialization import dumps

    headers, properties, body, _ = app.amqp.create_task_message(
        job_id, f"rnnq.{kind}", [job_id], {}, reply_to=app.thread_oid, ignore_result=None)
    content_type, content_encoding, data = dumps(body, serializer="json")
    properties.update(
        delivery_mode=PERSISTENT,
        delivery_info={"exchange": "", "routing_key": queue},
        priority=0,
        body_encoding="base64",
        delivery_tag=str(uuid.uuid4()),
    )
    return json.dumps({
        "body": base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii"),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": properties,
    })
