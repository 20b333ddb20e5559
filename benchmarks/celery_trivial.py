"""A trivial Celery app for benchmarks/redis_capacity.py: raw Celery beside rnnq.

    BENCH_REDIS_URL=redis://127.0.0.1:PORT/0 celery -A benchmarks.celery_trivial worker -Q trivial -c 1

The same wire settings as workers.app (JSON only, acks late, prefetch 1, no result
backend, the same visibility timeout and unacked-restore cadence). The task does one
Redis command so the benchmark can see when it started: RPUSH bench:started "<tag> <time>".
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery
from kombu import Exchange, Queue

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "trivial"
STARTED = "bench:started"

app = Celery("trivial", broker=URL)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    event_serializer="json",
    result_backend=None,
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={"visibility_timeout": 43200, "unacked_restore_interval": 10,
                              "unacked_restore_throttle": 10},
    broker_connection_retry_on_startup=True,
    task_queues=[Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)],
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)

_client: redis.Redis | None = None


@app.task(name="trivial.noop")
def noop(tag: str) -> None:
    started = time.time()
    global _client
    if _client is None:
        _client = redis.Redis.from_url(URL)
    _client.rpush(STARTED, f"{tag} {started!r}")
