"""The reaper's pass, run by every worker node every RNNQ_REAP_SECONDS.

1. Reap: a running job whose lease lapsed lost its worker; it is queued again (or
   failed at the loss cap) and its message re-sent.
2. Reconcile: a job queued for longer than RNNQ_RESEND_SECONDS with no message for it
   in the broker (its queue's lists, priority sub-lists included, or kombu's unacked
   hash) gets its message again. This repairs every lost send: a crash between the
   state change and the send, a send that failed, a message acked by a start that
   raised. A duplicate message is harmless: _START refuses a job that is taken.

One pass per period for the whole cluster: every node runs the loop (so the pass goes
on when nodes come and go) but only the node that takes the period's turn (a Redis key
set NX with a TTL just under the period) makes the pass; the others send nothing more.
Without it the cost in Redis grows with nodes x running jobs
(benchmarks/redis_capacity.py). And the pass looks only at the jobs whose lease deadline
has passed (JobStore.reap), not at every running job.

A Redis restart is not a worker loss. Leases are TTLs in Redis: when Redis comes back
after an outage longer than a lease, every lease has lapsed though the workers are
training on. So no job is reaped until Redis has been up, and this reaper connected to
it, for one lease plus one reap period: long enough for every live worker's next
renewal to re-take its lease (JobStore.renew_lease).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from workers.errors import JobNotFound
from workers.jobstore import Job, JobStore

log = logging.getLogger("rnnq.worker")

# kombu's Redis transport keeps a priority queue as the plain list plus these sub-lists.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
UNACKED = "unacked"  # kombu's hash of delivered, not yet acknowledged messages


@dataclass
class Reaper:
    store: JobStore
    lease_seconds: float
    reap_seconds: float
    resend_seconds: float
    max_losses: int
    node: str | None = None  # the worker node running this loop: its heartbeat rides on the turn
    _run_id: str | None = None
    _grace_until: float = 0.0
    _failing: bool = False

    @property
    def grace(self) -> float:
        return self.lease_seconds + self.reap_seconds

    @property
    def heartbeat_seconds(self) -> float:
        """How long a node counts as online after its last period (three periods)."""
        return max(3 * self.reap_seconds, 15.0)

    def pass_once(self) -> tuple[list[Job], list[Job]] | None:
        """One pass: (jobs reaped, jobs whose message was re-sent), the caller sends; None
        when another node makes this period's pass. Either way the node's heartbeat goes
        with the bid for the turn, in one request."""
        try:
            beat = (self.node, self.heartbeat_seconds) if self.node else None
            turn = self.store.take_turn("reaper", self.reap_seconds * 0.9, heartbeat=beat)
            if self._failing:  # we were cut off: count the grace from our return
                self._grace_until, self._failing = time.monotonic() + self.grace, False
            if not turn:
                return None
            run_id, uptime = self.store.redis_uptime()
        except Exception:
            self._failing = True
            raise
        now = time.monotonic()
        if self._run_id is not None and run_id != self._run_id:
            self._grace_until = now + self.grace  # Redis restarted (or failed over) since our last pass
        self._run_id = run_id
        reaped: list[Job] = []
        if uptime >= self.grace and now >= self._grace_until:
            reaped = self.store.reap(self.max_losses)
        return reaped, self.unsent()

    def unsent(self) -> list[Job]:
        """Jobs queued for longer than resend_seconds with no message in the broker."""
        ids = self.store.queued_since(time.time() - self.resend_seconds)
        if not ids:
            return []
        present = messages_in_broker(self.store)
        out = []
        for job_id in ids:
            if job_id in present:
                continue
            try:
                job = self.store.get(job_id)
            except JobNotFound:  # deleted meanwhile
                continue
            if job.state == "queued":
                out.append(job)
        return out


def messages_in_broker(store: JobStore) -> set[str]:
    """Ids of the jobs that have a message waiting in a queue or delivered and unacked."""
    r = store.redis
    ids: set[str] = set()
    pipe = r.pipeline(transaction=False)
    for queue in store.queues():
        for suffix in PRIORITY_SUFFIXES:
            pipe.lrange(queue + suffix, 0, -1)
    pipe.hvals(UNACKED)
    with store._reachable():
        replies = pipe.execute()
    for payload in (p for reply in replies[:-1] for p in reply):
        ids.add(_task_id(payload))
    for entry in cast(list[str], replies[-1]):
        try:
            ids.add(_task_id(json.loads(entry)[0]))
        except (ValueError, IndexError, TypeError):
            continue
    ids.discard("")
    return ids


def _task_id(payload: Any) -> str:
    """The task id (our job id) of a kombu message, as a JSON string or a dict."""
    try:
        message = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
        return str(message.get("headers", {}).get("id") or message.get("properties", {}).get("correlation_id") or "")
    except (ValueError, AttributeError):
        return ""
