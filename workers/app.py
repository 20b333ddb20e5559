"""The Celery application: `celery -A workers.app worker` and `rnnq worker` both use it.

JSON only on the wire. One message per job carries only the job id: the job's spec
lives in the job store, which outlives Celery's result backend (not used here).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)
from kombu import Exchange, Queue

from workers import settings as settings_mod
from workers.queues import KIND_QUEUES, QUEUES, TRAIN_QUEUE

TASK_QUEUES = {f"rnnq.{kind}": queue for kind, queue in KIND_QUEUES.items()}


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

    from workers.gpus import child_gpu

    index = getattr(current_process(), "index", 0) or 0
    # GPU numbers as NVML and nvidia-smi count them (PCI order): CUDA's default order,
    # fastest first, can differ on a node with mixed GPUs, and the metrics use NVML's.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ["CUDA_VISIBLE_DEVICES"] = child_gpu(gpus.split(","), index)


@worker_init.connect
def _wipe_metrics(**_: Any) -> None:
    """In the worker's parent before the pool forks: no values from an earlier run."""
    from workers import metrics

    path = metrics.multiprocess_dir()
    if path and settings_mod.resolve().metrics_port is not None:
        os.makedirs(path, exist_ok=True)
        metrics.wipe(path)


@worker_process_shutdown.connect
def _child_exited(pid: int | None = None, **_: Any) -> None:
    from workers import metrics

    metrics.child_exited(pid or os.getpid())


@worker_ready.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    s = settings_mod.resolve()
    if s.metrics_port is None:
        return
    from workers import metrics

    gpus = s.worker_gpus.split(",") if s.worker_gpus else None
    try:
        metrics.serve(s.metrics_port, s.metrics_addr, str(getattr(sender, "hostname", "") or "unknown"), gpus)
    except OSError:
        _log.exception("could not serve metrics on port %d; the worker runs on without them", s.metrics_port)


@worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    """In each worker's main process: re-queue running jobs whose lease lapsed.

    This, not the broker's visibility timeout, is what brings back the job of a worker
    that died (kill -9, OOM killer, lost node): within lease + reap seconds.
    """
    from workers import sweep as sweeps
    from workers.dispatch import send_job
    from workers.jobstore import JobStore
    from workers.reconcile import Reaper

    s = settings_mod.resolve()
    store = JobStore(s.redis_url)
    reaper = Reaper(store, s.lease_seconds, s.reap_seconds, s.resend_seconds, s.max_worker_losses)
    node = getattr(sender, "hostname", None)

    def loop() -> None:
        started = False
        while not _stopping.wait(0 if not started else s.reap_seconds):
            try:
                if node:
                    if not started:
                        store.set_draining(node, False)
                    store.heartbeat(node, ttl=max(3 * s.reap_seconds, 15.0))
                started = True
                reaped, unsent = reaper.pass_once()
                for job in reaped:
                    _log.warning("job %s lost its worker (%d so far); queued again", job.id, job.worker_losses)
                    send_job(job.id, job.kind, job.queue, app)
                for job in unsent:
                    _log.warning("job %s has been queued with no message; sending it again", job.id)
                    send_job(job.id, job.kind, job.queue, app)
                # Sweeps whose trials ended untold or that have room for more (an advance
                # lost with its worker, a trial failed by the reaper): workers.sweep.
                sweeps.advance_all(store, lambda job_id, kind, queue: send_job(job_id, kind, queue, app))
            except Exception:  # noqa: BLE001 - the reaper must outlive a Redis restart
                _log.warning("reaper pass failed", exc_info=True)

    threading.Thread(target=loop, name="rnnq-reaper", daemon=True).start()


@worker_shutting_down.connect
def _drain(sender: Any = None, how: str = "", **_: Any) -> None:
    """Warm shutdown (SIGTERM): running jobs checkpoint and go back to the queue."""
    _stopping.set()
    if sender:
        try:
            from workers.jobstore import JobStore

            store = JobStore(settings_mod.resolve().redis_url)
            store.set_draining(str(sender), True)
            store.forget_worker(str(sender))
        except Exception:  # noqa: BLE001 - shutting down anyway; the reaper recovers the jobs
            _log.warning("could not ask running jobs to hand back", exc_info=True)


_log = logging.getLogger("rnnq.worker")
_stopping = threading.Event()
app = make_app()
