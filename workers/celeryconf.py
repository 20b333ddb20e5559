"""Building a Celery app from the settings: for workers (workers.app) and for the CLI,
which builds one from its own flags only when it sends a message.

JSON only on the wire. One message per job carries only the job id: the job's spec
lives in the job store, which outlives Celery's result backend (not used here).
"""

from __future__ import annotations

import ssl
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from workers import settings as settings_mod
from workers.queues import QUEUES, TASK_QUEUES, TRAIN_QUEUE


def make_app(settings: settings_mod.Settings | None = None) -> Celery:
    s = settings or settings_mod.resolve()
    transport = {
        # Unacked messages return to the queue after this many seconds. This is the
        # one place Celery and kombu read it (no result backend is configured), and
        # workers and the CLI build their app here, so they never disagree. A
        # redelivered copy of a running job is refused by its lease (jobstore._START).
        "visibility_timeout": s.visibility_timeout,
        # kombu scans for expired unacked messages every interval * throttle seconds
        # (100 s by default); keep at least four scans per timeout when it is short.
        "unacked_restore_interval": max(1, min(10, s.visibility_timeout // 4)),
        "unacked_restore_throttle": max(1, min(10, s.visibility_timeout // (4 * max(1, min(10, s.visibility_timeout // 4))))),
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
        task_queues=[Queue(q, Exchange(q), routing_key=q) for q in QUEUES],
        task_default_queue=TRAIN_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        task_create_missing_queues=True,  # `--queue gpu-a100` needs no configuration
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_use_ssl=_ssl_options(s.redis_url),
    )
    return app


def _ssl_options(url: str) -> dict[str, Any] | None:
    """TLS for rediss:// URLs. Options in the URL's query (ssl_cert_reqs, ssl_ca_certs,
    ssl_certfile, ssl_keyfile) are read by kombu and redis-py alike; without them the
    server certificate is verified against the system's CAs."""
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return None
