"""The Celery application: `celery -A workers.app worker` and `rnnq worker` both use it.

JSON only on the wire. One message per job carries only the job id: the job's spec
lives in the job store, which outlives Celery's result backend (not used here).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from kombu import Exchange, Queue

from workers import settings as settings_mod

TRAIN_QUEUE = "train"
GENERATE_QUEUE = "generate"
TASK_QUEUES = {"rnnq.train": TRAIN_QUEUE, "rnnq.generate": GENERATE_QUEUE}


def make_app(settings: settings_mod.Settings | None = None) -> Celery:
    s = settings or settings_mod.resolve()
    transport = {
        # Unacked messages return to the queue after this many seconds. Set in both
        # broker_transport_options and result/visibility settings Celery reads, so the
        # worker and the client never disagree. See DEFAULT_VISIBILITY_TIMEOUT.
        "visibility_timeout": s.visibility_timeout,
    }
    app = Celery("rnnq", broker=s.redis_url, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        # A job is acknowledged when it ends, not when it starts: a worker that dies
        # mid-job leaves the message to be delivered again.
        task_acks_late=True,
        worker_prefetch_multiplier=1,  # one job at a time per pool process
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # keep reconnecting while Redis restarts
        task_queues=[Queue(q, Exchange(q), routing_key=q) for q in (TRAIN_QUEUE, GENERATE_QUEUE)],
        task_default_queue=TRAIN_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        task_create_missing_queues=True,  # `--queue gpu-a100` needs no configuration
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_use_ssl=_ssl_options(s.redis_url),
    )
    return app


def _ssl_options(url: str) -> dict[str, Any] | None:
    """rediss:// URLs carry their ssl_* query options; Celery needs them here too."""
    return {"ssl_cert_reqs": "required"} if url.startswith("rediss://") and "ssl_cert_reqs" not in url else None


@worker_process_init.connect
def _pin_gpu(**_: Any) -> None:
    """One pool process per GPU: process i sees only GPU worker_gpus[i].

    Runs in the pool child before any job, so CUDA is first initialised there and
    never in the parent (a forked CUDA context is unusable).
    """
    gpus = settings_mod.resolve().worker_gpus
    if not gpus:
        return
    from billiard.process import current_process

    devices = gpus.split(",")
    index = getattr(current_process(), "index", 0) or 0
    os.environ["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]


app = make_app()
