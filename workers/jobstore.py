"""Job records, the job index and per-job metric streams, in Redis.

Celery's result backend expires results after a day; these records are kept until
deleted. Layout (prefix "rnnq:"):

    rnnq:job:<id>       hash   the record (see Job)
    rnnq:jobs           zset   job ids scored by submit time: the index `list` reads
    rnnq:name:<name>    string the newest job submitted under a name
    rnnq:events:<id>    stream training metrics (step, loss, val_loss, lr, tokens/s, ...)
    rnnq:lease:<id>     string the token of the one process running the job, with a TTL
    rnnq:running        set    jobs in state running, for the reaper
    rnnq:drain:<node>   string set while a worker node shuts down warm: its jobs hand back
    rnnq:worker:<node>  string a worker node's heartbeat (TTL): what the exporter counts online
    rnnq:queues         set    every queue a job was sent to, for the exporter

A job is owned by whoever holds its lease. Every delivery of its message goes through
_START, which refuses a job that is finished or leased, so a redelivered message
(visibility timeout, a second worker) never trains a second copy.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import redis

from workers.errors import JobNotFound, RedisUnavailable
from workers.settings import redact

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
EVENTS_MAXLEN = 20_000  # newest metric events kept per job (trimmed approximately)
_P = "rnnq:"

T = TypeVar("T")

# Take a job: KEYS job hash, lease, running set; ARGV now, worker, token, lease ms,
# max losses, job id. Returns 'running' when the caller now owns the job; otherwise the
# state ('' for a deleted job) or 'leased' (someone else runs it), and the caller skips.
# A job found 'running' with no lease lost its worker: counted, and failed at the cap.
_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return '' end
if state ~= 'queued' and state ~= 'running' then return state end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'leased' end
if state == 'running' then
  local lost = redis.call('HINCRBY', KEYS[1], 'worker_losses', 1)
  if lost >= tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error', 'worker lost ' .. lost .. ' times')
    redis.call('SREM', KEYS[3], ARGV[6])
    return 'failed'
  end
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'last_started_at', ARGV[1], 'worker', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('SADD', KEYS[3], ARGV[6])
return 'running'
"""

# A running job whose lease lapsed: count the loss, then queue it again (returns
# 'requeue') or fail it at the cap. KEYS job hash, lease, running set; ARGV now, max, id.
_REAP = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then redis.call('SREM', KEYS[3], ARGV[3]) return 'gone' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'alive' end
redis.call('SREM', KEYS[3], ARGV[3])
local lost = redis.call('HINCRBY', KEYS[1], 'worker_losses', 1)
if lost >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error', 'worker lost ' .. lost .. ' times')
  return 'failed'
end
redis.call('HSET', KEYS[1], 'state', 'queued')
return 'requeue'
"""

# Renew (ARGV[2] ms) or release (ARGV[2] == '0') a lease, only if the token matches.
_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# Cancel: a queued job becomes cancelled at once; a running one is asked to stop.
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return '' end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
  return 'cancelled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  return 'requested'
end
return state
"""

# Resume: a cancelled or failed job goes back to queued with a clean slate.
_RESUME = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'cancelled' and state ~= 'failed' then return state or '' end
redis.call('HSET', KEYS[1], 'state', 'queued', 'worker_losses', '0', 'cancel_requested', '')
redis.call('HDEL', KEYS[1], 'error', 'traceback', 'finished_at')
return 'queued'
"""


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Job:
    id: str
    kind: str
    state: str
    spec: dict[str, Any]
    queue: str
    created_at: float
    name: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    attempts: int = 0
    error: str | None = None
    traceback: str | None = None
    result: dict[str, Any] | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    progress: dict[str, Any] | None = None  # the latest metric event
    vocab: str | None = None  # a finished training job's characters, for prompt checks
    worker_losses: int = 0  # deliveries whose worker died mid-job
    resumed_from: int | None = None  # step the latest attempt resumed from
    pid: int | None = None  # process running the latest attempt

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Job:
        def num(key: str) -> float | None:
            return float(h[key]) if h.get(key) else None

        return cls(
            id=h["id"],
            kind=h["kind"],
            state=h["state"],
            spec=json.loads(h["spec"]),
            queue=h["queue"],
            created_at=float(h["created_at"]),
            name=h.get("name") or None,
            started_at=num("started_at"),
            finished_at=num("finished_at"),
            worker=h.get("worker") or None,
            attempts=int(h.get("attempts", 0)),
            error=h.get("error") or None,
            traceback=h.get("traceback") or None,
            result=json.loads(h["result"]) if h.get("result") else None,
            artifacts=json.loads(h.get("artifacts") or "{}"),
            progress=json.loads(h["progress"]) if h.get("progress") else None,
            vocab=h.get("vocab") or None,
            worker_losses=int(h.get("worker_losses") or 0),
            resumed_from=int(h["resumed_from"]) if h.get("resumed_from") else None,
            pid=int(h["pid"]) if h.get("pid") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class JobStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=30
        )
        self._start = self.redis.register_script(_START)
        self._reap = self.redis.register_script(_REAP)
        self._lease = self.redis.register_script(_LEASE)
        self._cancel = self.redis.register_script(_CANCEL)
        self._resume = self.redis.register_script(_RESUME)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {redact(self.url)}: {exc}") from None
        except redis.AuthenticationError as exc:
            raise RedisUnavailable(f"Redis at {redact(self.url)} refused the credentials: {exc}") from None

    def call(self, fn: Callable[[], T]) -> T:
        with self._reachable():
            return fn()

    def ping(self) -> None:
        self.call(self.redis.ping)

    def create(self, kind: str, spec: dict[str, Any], queue: str, name: str | None = None, job_id: str | None = None) -> Job:
        job = Job(id=job_id or new_job_id(), kind=kind, state="queued", spec=spec, queue=queue, created_at=time.time(), name=name)
        record = {
            "id": job.id,
            "kind": kind,
            "state": job.state,
            "spec": json.dumps(spec),
            "queue": queue,
            "created_at": repr(job.created_at),
            "name": name or "",
            "attempts": 0,
        }
        pipe = self.redis.pipeline()
        pipe.hset(_P + f"job:{job.id}", mapping=cast(Any, record))
        pipe.zadd(_P + "jobs", {job.id: job.created_at})
        pipe.sadd(_P + "queues", queue)
        if name:
            pipe.set(_P + f"name:{name}", job.id)
        with self._reachable():
            pipe.execute()
        return job

    def get(self, job_id: str) -> Job:
        h = cast(dict[str, str], self.call(lambda: self.redis.hgetall(_P + f"job:{job_id}")))
        if not h:
            raise JobNotFound(f"no job {job_id!r}")
        return Job.from_hash(h)

    def resolve(self, job_or_name: str) -> Job:
        """A job by id, or the newest job submitted under that name."""
        try:
            return self.get(job_or_name)
        except JobNotFound:
            pass
        job_id = cast(str | None, self.call(lambda: self.redis.get(_P + f"name:{job_or_name}")))
        if job_id is None:
            raise JobNotFound(f"no job with id or name {job_or_name!r}")
        return self.get(job_id)

    def list_jobs(self, state: str | None = None, limit: int = 1000) -> list[Job]:
        """Newest first. Without a state filter only `limit` records are read."""
        stop = -1 if state is not None else limit - 1
        ids = cast(list[str], self.call(lambda: self.redis.zrevrange(_P + "jobs", 0, stop)))
        pipe = self.redis.pipeline()
        for job_id in ids:
            pipe.hgetall(_P + f"job:{job_id}")
        with self._reachable():
            hashes = pipe.execute() if ids else []
        jobs = [Job.from_hash(h) for h in hashes if h]
        if state is not None:
            jobs = [j for j in jobs if j.state == state]
        return jobs[:limit]

    def start(self, job_id: str, worker: str, token: str, lease_seconds: float, max_losses: int) -> str:
        """Take the job and its lease; 'running' means this caller now owns it."""
        keys = [_P + f"job:{job_id}", _P + f"lease:{job_id}", _P + "running"]
        args: list[str | int] = [repr(time.time()), worker, token, int(lease_seconds * 1000), max_losses, job_id]
        with self._reachable():
            return str(self._start(keys=keys, args=args))

    def renew_lease(self, job_id: str, token: str, lease_seconds: float) -> bool:
        with self._reachable():
            return bool(self._lease(keys=[_P + f"lease:{job_id}"], args=[token, int(lease_seconds * 1000)]))

    def release_lease(self, job_id: str, token: str) -> None:
        with self._reachable():
            self._lease(keys=[_P + f"lease:{job_id}"], args=[token, "0"])

    def reap(self, max_losses: int) -> list[Job]:
        """Running jobs whose lease lapsed, now queued again (the caller re-sends them)."""
        with self._reachable():
            ids = cast(list[str], self.redis.smembers(_P + "running"))
            requeued = []
            for job_id in ids:
                keys = [_P + f"job:{job_id}", _P + f"lease:{job_id}", _P + "running"]
                if self._reap(keys=keys, args=[repr(time.time()), max_losses, job_id]) == "requeue":
                    requeued.append(job_id)
        return [self.get(job_id) for job_id in requeued]

    def cancel(self, job_id: str) -> str:
        """'cancelled' (was queued), 'requested' (running: stops at its next step) or the final state."""
        with self._reachable():
            return str(self._cancel(keys=[_P + f"job:{job_id}"], args=[repr(time.time())]))

    def cancel_requested(self, job_id: str) -> bool:
        return self.call(lambda: self.redis.hget(_P + f"job:{job_id}", "cancel_requested")) == "1"

    def reopen(self, job_id: str) -> str:
        """Put a cancelled or failed job back to queued; returns its (new) state."""
        with self._reachable():
            return str(self._resume(keys=[_P + f"job:{job_id}"]))

    def set_draining(self, node: str, on: bool) -> None:
        key = _P + f"drain:{node}"
        self.call(lambda: self.redis.set(key, "1", ex=3600) if on else self.redis.delete(key))

    def draining(self, node: str) -> bool:
        return bool(self.call(lambda: self.redis.exists(_P + f"drain:{node}")))

    def heartbeat(self, node: str, ttl: float) -> None:
        """The worker node is alive for ttl seconds more."""
        self.call(lambda: self.redis.set(_P + f"worker:{node}", repr(time.time()), px=int(ttl * 1000)))

    def forget_worker(self, node: str) -> None:
        self.call(lambda: self.redis.delete(_P + f"worker:{node}"))

    def workers_online(self) -> list[str]:
        prefix = _P + "worker:"
        return sorted(k[len(prefix):] for k in self.call(lambda: list(self.redis.scan_iter(prefix + "*", count=1000))))

    def queues(self) -> list[str]:
        """Every queue a job was ever sent to."""
        return sorted(self.call(lambda: cast(set[str], self.redis.smembers(_P + "queues"))))

    def running_ids(self) -> list[str]:
        return sorted(self.call(lambda: cast(set[str], self.redis.smembers(_P + "running"))))

    def fields(self, job_ids: list[str], *names: str) -> list[dict[str, str | None]]:
        """Some fields of many job records in one round trip (for the exporter)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(_P + f"job:{job_id}", list(names))
        with self._reachable():
            rows = pipe.execute()
        return [dict(zip(names, row, strict=True)) for row in rows]

    def all_ids(self) -> list[str]:
        return self.call(lambda: cast(list[str], self.redis.zrange(_P + "jobs", 0, -1)))

    def update(self, job_id: str, **fields: Any) -> None:
        mapping: dict[str, Any] = {
            k: (json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v)) for k, v in fields.items()
        }
        self.call(lambda: self.redis.hset(_P + f"job:{job_id}", mapping=cast(Any, mapping)))

    def finish(self, job_id: str, state: str, **fields: Any) -> None:
        assert state in FINAL_STATES, state
        self.update(job_id, state=state, finished_at=repr(time.time()), **fields)
        self.call(lambda: self.redis.srem(_P + "running", job_id))

    def hand_back(self, job_id: str) -> None:
        """A running job goes back to queued (its worker is shutting down)."""
        self.update(job_id, state="queued")
        self.call(lambda: self.redis.srem(_P + "running", job_id))

    def set_state_if(self, job_id: str, expected: str, state: str) -> bool:
        """Compare-and-set of the state field (used to cancel a queued job)."""
        key = _P + f"job:{job_id}"

        def txn(pipe: redis.client.Pipeline) -> bool:
            if pipe.hget(key, "state") != expected:
                return False
            pipe.multi()
            pipe.hset(key, mapping={"state": state, "finished_at": repr(time.time())})
            return True

        return bool(self.call(lambda: self.redis.transaction(cast(Any, txn), key, value_from_callable=True)))

    def add_event(self, job_id: str, event: dict[str, Any]) -> None:
        payload = json.dumps(event)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(_P + f"events:{job_id}", {"m": payload}, maxlen=EVENTS_MAXLEN, approximate=True)
        pipe.hset(_P + f"job:{job_id}", "progress", payload)
        if event.get("val_loss") is not None:  # the latest evaluation, kept between evaluations
            pipe.hset(_P + f"job:{job_id}", "val_loss", repr(event["val_loss"]))
        with self._reachable():
            pipe.execute()

    def events(self, job_id: str, after: str = "0-0", block_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Metric events after the given stream id; waits up to block_ms for new ones."""
        with self._reachable():
            reply = cast(Any, self.redis.xread({_P + f"events:{job_id}": after}, block=block_ms, count=10_000))
        if not reply:
            return []
        return [(event_id, json.loads(fields["m"])) for event_id, fields in reply[0][1]]

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        pipe = self.redis.pipeline()
        pipe.delete(_P + f"job:{job_id}", _P + f"events:{job_id}", _P + f"lease:{job_id}")
        pipe.srem(_P + "running", job_id)
        pipe.zrem(_P + "jobs", job_id)
        if job.name and self.redis.get(_P + f"name:{job.name}") == job_id:
            pipe.delete(_P + f"name:{job.name}")
        with self._reachable():
            pipe.execute()
