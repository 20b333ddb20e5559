"""The Celery application: `celery -A workers.app worker` and `rnnq worker` both use it.

Importing this module builds the app from the environment's settings and connects the
worker's signal handlers, so only worker processes import it; the CLI builds its own
app with workers.celeryconf.make_app from its flags.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)

from workers import dispatch
from workers import settings as settings_mod
from workers.celeryconf import make_app
from workers.queues import GENERATE_QUEUE, TASK_QUEUES, TRAIN_QUEUE

__all__ = ["GENERATE_QUEUE", "TASK_QUEUES", "TRAIN_QUEUE", "app", "make_app"]


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
    settings_mod.pin_gpu(child_gpu(gpus.split(","), index))


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
    from workers.jobstore import JobStore
    from workers.reconcile import Reaper

    s = settings_mod.resolve()
    store = JobStore(s.redis_url)
    node = getattr(sender, "hostname", None)
    reaper = Reaper(store, s.lease_seconds, s.reap_seconds, s.resend_seconds, s.max_worker_losses, node=node)

    def loop() -> None:
        started = False
        while not _stopping.wait(0 if not started else s.reap_seconds):
            try:
                if node and not started:
                    store.set_draining(node, False)
                started = True
                made = reaper.pass_once()  # and the node's heartbeat
                if made is None:
                    continue  # another node makes this period's pass
                reaped, unsent = made
                for job in reaped:
                    _log.warning("job %s lost its worker (%d so far); queued again", job.id, job.worker_losses)
                    dispatch.send_job(store, job.id, job.kind, job.queue, app)
                for job in unsent:
                    _log.warning("job %s has been queued with no message; sending it again", job.id)
                    dispatch.send_job(store, job.id, job.kind, job.queue, app)
                # Sweeps whose trials ended untold or that have room for more (an advance
                # lost with its worker, a trial failed by the reaper): workers.sweep.
                sweeps.advance_all(store, lambda job_id, kind, queue: dispatch.send_job(store, job_id, kind, queue, app))
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
dispatch.use(app)
