"""The cluster exporter (`rnnq exporter`): what only Redis knows, read at scrape time.

One process per cluster. Each scrape reads the broker's queues and the job store:

    rnnq_queue_messages{queue}              ready messages, every priority sub-list kombu uses
    rnnq_queue_unacked_messages{queue}      delivered to a worker, not yet acknowledged
    rnnq_queue_oldest_job_age_seconds       age of the oldest queued job (0 when none)
    rnnq_jobs{queue,state}                  job records by state
    rnnq_workers_online / rnnq_workers_busy worker nodes with a live heartbeat / running a job
    rnnq_job_*{job_id,job_name,...}         each running job's latest progress report
    rnnq_sweep_trials{sweep,state}          the trials of the newest SWEEPS_SHOWN sweeps, by state
                                            (a job state, or pruned: stopped by the sweep's pruner)

The per-job gauges live here, not in the workers: a worker's pool processes share one
endpoint through prometheus_client's multiprocess files, which keep every label set
they have ever seen until the process dies, so a job label there would outlive its job.
Here a job's series exist exactly while the job is in the running set: cardinality is
bounded by the number of worker slots, and a finished job's series simply stop.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any, cast

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.jobstore import STATES, JobStore
from workers.queues import QUEUES
from workers.sweep import SWEEPS
from workers.sweepfile import FIGURES

log = logging.getLogger("rnnq.exporter")

# kombu's Redis transport keeps a queue's messages in one list per priority step: the
# queue's own name for priority 0, "<queue>\x06\x16<step>" for the others.
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
KOMBU_UNACKED = "unacked"  # hash: delivery tag -> JSON [message, exchange, routing key]
SWEEPS_SHOWN = 50  # sweeps whose trials are counted: the newest, so the label set stays bounded
TRIAL_STATES = (*STATES, "pruned")

JOB_LABELS = ["job_id", "job_name", "kind", "queue", "worker"]
FIGURE_NAMES = {figure for figures in FIGURES.values() for figure in figures} - {"val_loss"}
# progress report field -> (metric, help)
JOB_GAUGES = {
    "loss": ("rnnq_job_train_loss", "Training loss (nats per token) of a running job, averaged since its last report."),
    "val_loss": ("rnnq_job_validation_loss", "Validation loss (nats per token) at a running job's latest evaluation."),
    "lr": ("rnnq_job_learning_rate", "Learning rate of a running job."),
    "grad_norm": ("rnnq_job_grad_norm", "Gradient norm (before clipping) of a running job."),
    "tokens_per_s": ("rnnq_job_tokens_per_second", "Training throughput of a running job."),
    "progress": ("rnnq_job_progress_ratio", "A running job's progress towards its nearest stop condition, 0-1."),
    "step": ("rnnq_job_step", "Optimizer steps a running job has taken."),
    "elapsed": ("rnnq_job_elapsed_seconds", "Training time of a running job."),
    "eta": ("rnnq_job_eta_seconds", "Estimated training time left for a running job."),
}


def kombu_lists(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEP}{step}" for step in KOMBU_PRIORITY_STEPS]


class ClusterCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rnnq_redis_up", "1 if the exporter reached Redis on this scrape.")
        try:
            families = self._families()
        except Exception:
            log.warning("scrape failed", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        store, r = self.store, self.store.redis
        queues = sorted(set(QUEUES) | set(store.queues()))
        ids = store.all_ids()
        records = store.fields(ids, "state", "queue", "created_at", "sweep")
        running = store.fields(store.running_ids(), "id", "state", "kind", "queue", "name", "worker", "progress",
                               "val_loss", "figures")
        return [
            *self._queues(r, queues, records),
            *self._jobs(queues, records),
            *self._workers(running),
            *self._running(running),
            self._sweeps(ids, records),
        ]

    def _sweeps(self, ids: list[str], records: list[dict[str, str | None]]) -> Metric:
        family = GaugeMetricFamily("rnnq_sweep_trials", "Trials of a sweep by state (pruned: stopped by its pruner).",
                                   labels=["sweep", "state"])
        shown = self.store.call(lambda: cast(list[str], self.store.redis.zrevrange(SWEEPS, 0, SWEEPS_SHOWN - 1)))
        trials = [(job_id, rec) for job_id, rec in zip(ids, records, strict=True) if rec["sweep"] in shown]
        done = [job_id for job_id, rec in trials if rec["state"] == "succeeded"]
        pruned = {job_id for job_id, row in zip(done, self.store.fields(done, "result"), strict=True)
                  if json.loads(row["result"] or "{}").get("stopped_by") == "pruned"}
        counts = Tally((rec["sweep"], "pruned" if job_id in pruned else rec["state"]) for job_id, rec in trials)
        for sweep in sorted(shown):
            for state in TRIAL_STATES:
                family.add_metric([sweep, state], counts.get((sweep, state), 0))
        return family

    def _queues(self, r: redis.Redis, queues: list[str], records: list[dict[str, str | None]]) -> list[Metric]:
        ready = GaugeMetricFamily("rnnq_queue_messages", "Messages waiting in a queue (all priority levels).",
                                  labels=["queue"])
        unacked = GaugeMetricFamily("rnnq_queue_unacked_messages",
                                    "Messages delivered to a worker and not yet acknowledged.", labels=["queue"])
        oldest = GaugeMetricFamily("rnnq_queue_oldest_job_age_seconds",
                                   "Age of the oldest job waiting in a queue (0 when none waits).", labels=["queue"])
        pipe = r.pipeline(transaction=False)
        for q in queues:
            for key in kombu_lists(q):
                pipe.llen(key)
        lengths = pipe.execute()
        in_flight = _unacked_by_queue(r)
        now = time.time()
        first_queued: dict[str, float] = {}
        for rec in records:
            if rec["state"] == "queued" and rec["queue"] and rec["created_at"]:
                first_queued[rec["queue"]] = min(first_queued.get(rec["queue"], now), float(rec["created_at"]))
        steps = len(KOMBU_PRIORITY_STEPS)
        for i, q in enumerate(queues):
            ready.add_metric([q], sum(lengths[i * steps:(i + 1) * steps]))
            unacked.add_metric([q], in_flight.get(q, 0))
            oldest.add_metric([q], now - first_queued[q] if q in first_queued else 0.0)
        return [ready, unacked, oldest]

    def _jobs(self, queues: list[str], records: list[dict[str, str | None]]) -> list[Metric]:
        family = GaugeMetricFamily("rnnq_jobs", "Job records in the job store, by queue and state.",
                                   labels=["queue", "state"])
        counts = Tally((rec["queue"], rec["state"]) for rec in records if rec["state"])
        for q in sorted(set(queues) | {q for q, _ in counts if q}):
            for state in STATES:
                family.add_metric([q, state], counts.get((q, state), 0))
        return [family]

    def _workers(self, running: list[dict[str, str | None]]) -> list[Metric]:
        online = set(self.store.workers_online())
        busy = {rec["worker"] for rec in running if rec["state"] == "running" and rec["worker"]}
        return [
            GaugeMetricFamily("rnnq_workers_online", "Worker nodes with a live heartbeat.", value=len(online)),
            GaugeMetricFamily("rnnq_workers_busy", "Worker nodes running at least one job.", value=len(busy)),
        ]

    def _running(self, running: list[dict[str, str | None]]) -> list[Metric]:
        families = {key: GaugeMetricFamily(name, text, labels=JOB_LABELS) for key, (name, text) in JOB_GAUGES.items()}
        figures = GaugeMetricFamily("rnnq_job_figure", "A running job's other held-out figures at its latest evaluation "
                                    "(accuracy, macro_f1, rmse, mae, bleu, chrf, cer, wer: whichever its task reports).",
                                    labels=[*JOB_LABELS, "figure"])
        for rec in running:
            if rec["state"] != "running" or not rec["id"]:
                continue
            labels = [rec["id"], rec["name"] or "", rec["kind"] or "", rec["queue"] or "", rec["worker"] or ""]
            report: dict[str, Any] = json.loads(rec["progress"]) if rec["progress"] else {"step": 0}
            if rec["val_loss"]:
                report["val_loss"] = float(rec["val_loss"])
            report["eta"] = _eta(report)
            for key, family in families.items():
                value = report.get(key)
                if isinstance(value, (int, float)):
                    family.add_metric(labels, float(value))
            for figure, value in sorted(json.loads(rec["figures"] or "{}").items()):
                if isinstance(value, (int, float)) and figure in FIGURE_NAMES:  # a bounded label set
                    figures.add_metric([*labels, figure], float(value))
        return [*families.values(), figures]


def _eta(report: dict[str, Any]) -> float | None:
    """Training time left, from the progress made in the time trained so far."""
    progress, elapsed = report.get("progress"), report.get("elapsed")
    if not isinstance(progress, (int, float)) or not isinstance(elapsed, (int, float)) or progress <= 0:
        return None
    eta = elapsed * (1 - progress) / progress
    return eta if math.isfinite(eta) else None


def _unacked_by_queue(r: redis.Redis) -> dict[str, int]:
    """In-flight messages per queue, from kombu's unacked hash (one entry per message a
    worker holds: bounded by the number of worker slots)."""
    counts: Tally[str] = Tally()
    for _, raw in r.hscan_iter(KOMBU_UNACKED, count=500):
        try:
            _, _, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        counts[str(routing_key)] += 1
    return dict(counts)


def serve(store: JobStore, port: int, addr: str) -> None:
    registry = CollectorRegistry()
    registry.register(ClusterCollector(store))
    start_http_server(port, addr, registry=registry)
    log.info("exporter on http://%s:%d/metrics", addr, port)
