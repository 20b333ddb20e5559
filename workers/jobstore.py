"""Job records, the job index and per-job metric streams, in Redis.

Celery's result backend expires results after a day; these records are kept until
deleted. Layout (prefix "rnnq:"):

    rnnq:job:<id>       hash   the record (see Job)
    rnnq:jobs           zset   job ids scored by submit time: the index `list` reads
    rnnq:names:<name>   zset   the jobs submitted under a name, by submit time (newest wins)
    rnnq:events:<id>    stream training metrics (step, loss, val_loss, lr, tokens/s, ...),
                               one entry a talk: its events as a JSON array
    rnnq:lease:<id>     string the token of the one process running the job, with a TTL
    rnnq:running        set    jobs in state running
    rnnq:deadlines      zset   running jobs scored by when their lease lapses (ms, Redis's
                               clock): what the reaper reads, kept with the lease
    rnnq:queued         zset   jobs in state queued, scored by when they became queued:
                               what the reconciler checks against the broker's lists
    rnnq:drain:<node>   string set while a worker node shuts down warm: its jobs hand back
    rnnq:worker:<node>  string a worker node's heartbeat (TTL): what the exporter counts online
    rnnq:queues         set    every queue a job was sent to, for the exporter
    rnnq:turn:reaper    string held for one reap period by the node making that period's pass

A job is owned by whoever holds its lease. Every delivery of its message goes through
_START, which refuses a job that is finished or leased, so a redelivered message
(visibility timeout, a second worker) never trains a second copy.

Fencing. _START gives each attempt a token (kept in the record as `lease_token` and as
the lease's value). Every write an attempt makes on the job goes through a script that
first runs _FENCE: the record exists, is `running`, and its `lease_token` is the
writer's. A copy that lost its job (paused past its lease and reaped, cut off, handed
back) fails that check and writes nothing: no record update, no event, no result, no
checkpoint pointer; and since the record must exist, no write re-creates a deleted job.
An attempt whose lease key lapsed while nobody else took the job (a Redis restart
longer than the lease) passes the check and re-takes the lease in the same step.

Every fenced write renews the lease (a running job's talk only when less than two
thirds of the TTL is left), and its reply is the attempt's Standing: whether
the user asked the job to stop (`cancel_requested`) or its worker node is shutting down
(rnnq:drain:<node>). A running job learns both from the writes it makes anyway (its
progress events), with no polling of its own (workers.runner).

Lease deadlines. Whatever sets a lease (_START, _FENCE) also scores the job in
rnnq:deadlines with the lease key's expiry (by Redis's clock, which its TTLs run on);
whatever takes a job out of rnnq:running takes it out of there too. So a reaper
pass reads the lapsed leases with one ZRANGEBYSCORE (_DUE) and runs _REAP only for
those, not once per running job. The index decides only what is looked at: _REAP still
checks the lease key itself.

Invariant: every path that makes a job `queued` (submit, hand-back, reap, resume)
deletes its lease and adds it to rnnq:queued in the same script, before the caller
sends its message; the reconciler (workers.reconcile) re-sends the message of a job
queued for too long with no message in the broker, so a lost send is repaired.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from workers.errors import JobNotFound, RedisUnavailable
from workers.settings import redact

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
EVENTS_MAXLEN = 20_000  # newest stream entries (talks) kept per job, trimmed approximately
_P = "rnnq:"
# A reply that takes longer than this is a lost connection. Without it a host cut off
# by a partition (no RST, only silence) would block in a read until TCP gives up, many
# minutes later, and its lease thread could not notice that the lease is gone.
SOCKET_TIMEOUT = 15.0

T = TypeVar("T")

# Set a lease and score its job in the deadline index with the lease key's own expiry
# (PEXPIRETIME, Redis 7: ms since the epoch by Redis's clock).
_HOLD = """
local function hold(lease, deadlines, id, token, ms)
  redis.call('SET', lease, token, 'PX', ms)
  redis.call('ZADD', deadlines, redis.call('PEXPIRETIME', lease), id)
end
"""

# Take a job: KEYS job hash, lease, running set, queued zset, deadlines zset; ARGV now,
# worker, token, lease ms, max losses, job id. Returns 'running:<attempt>' when the caller now owns the
# job (the attempt number is its fencing token's order); otherwise the
# state ('' for a deleted job) or 'leased' (someone else runs it), and the caller skips.
# A job found 'running' with no lease lost its worker: counted, and failed at the cap.
_START = _HOLD + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return '' end
if state ~= 'queued' and state ~= 'running' then return state end
-- A queued job's lease can only be a stale copy's (every path to queued deletes it,
-- and fenced writes need state running), so only a running job's lease refuses.
if state == 'running' and redis.call('EXISTS', KEYS[2]) == 1 then return 'leased' end
if state == 'running' then
  local lost = redis.call('HINCRBY', KEYS[1], 'worker_losses', 1)
  if lost >= tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error', 'worker lost ' .. lost .. ' times')
    redis.call('SREM', KEYS[3], ARGV[6])
    redis.call('ZREM', KEYS[5], ARGV[6])
    return 'failed'
  end
end
hold(KEYS[2], KEYS[5], ARGV[6], ARGV[3], ARGV[4])
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'last_started_at', ARGV[1], 'worker', ARGV[2], 'lease_token', ARGV[3])
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('ZREM', KEYS[4], ARGV[6])
return 'running:' .. attempt
"""

# A running job whose lease lapsed: count the loss, then queue it again (returns
# 'requeue') or fail it at the cap. KEYS job hash, lease, running set, queued zset,
# deadlines zset; ARGV now, max, id. A live lease ('alive') is scored again with its
# expiry: a job the index did not cover (started before the index existed).
_REAP = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then
  redis.call('SREM', KEYS[3], ARGV[3])
  redis.call('ZREM', KEYS[5], ARGV[3])
  return 'gone'
end
local expiry = redis.call('PEXPIRETIME', KEYS[2])
if expiry ~= -2 then
  if expiry > 0 then redis.call('ZADD', KEYS[5], expiry, ARGV[3]) end
  return 'alive'
end
redis.call('SREM', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
local lost = redis.call('HINCRBY', KEYS[1], 'worker_losses', 1)
if lost >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error', 'worker lost ' .. lost .. ' times')
  return 'failed'
end
redis.call('HSET', KEYS[1], 'state', 'queued')
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[3])
return 'requeue'
"""

# What a reaper pass looks at: the running jobs whose lease deadline has passed by
# Redis's clock; or every running job when the index does not cover them all (jobs
# started by a version without it), which _REAP then scores. KEYS deadlines zset,
# running set.
_DUE = """
if redis.call('ZCARD', KEYS[1]) ~= redis.call('SCARD', KEYS[2]) then
  return redis.call('SMEMBERS', KEYS[2])
end
local now = redis.call('TIME')
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
"""

# The fence every write of an attempt passes first. KEYS[1] job hash, KEYS[2] lease,
# KEYS[3] deadlines zset, KEYS[4] the drain key of the attempt's node; ARGV[1] token,
# ARGV[2] lease ms. Returns false when the caller no longer owns the job; otherwise
# renews (or re-takes, after a Redis restart) the lease and returns the attempt's
# standing: 'cancel' (the user asked it to stop), 'drain' (its node is shutting down:
# checkpoint and hand back) or 'owned' (carry on). A `lazy` write (a running job's
# talk, every few seconds) renews only when less than two thirds of the TTL is left:
# either way the lease lives for two thirds of a TTL after the write, which is all the
# writer assumes (workers.runner.Lease), for two Redis calls less on most writes.
_FENCE = _HOLD + """
local function fenced(job, lease, deadlines, drain, token, ms, lazy)
  local record = redis.call('HMGET', job, 'state', 'lease_token', 'cancel_requested', 'id')
  if record[1] ~= 'running' or record[2] ~= token then return false end
  local holder = redis.call('GET', lease)
  if holder and holder ~= token then return false end
  if not (lazy and holder and redis.call('PTTL', lease) * 3 > tonumber(ms) * 2) then
    hold(lease, deadlines, record[4], token, ms)
  end
  if record[3] == '1' then return 'cancel' end
  if redis.call('EXISTS', drain) == 1 then return 'drain' end
  return 'owned'
end
"""

# Renew the lease (re-take it if it lapsed and nobody else took the job); returns the
# standing, false when fenced out.
_RENEW = _FENCE + """
return fenced(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2])
"""

# A fenced record update: ARGV[3..] field, value pairs.
_UPDATE = _FENCE + """
if not fenced(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]) then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# Fenced metric events and checkpoint pointers, in one step: what a running job sends
# once per talk (workers.runner). KEYS job, lease, deadlines, drain, stream; ARGV token,
# ms, maxlen, the latest val_loss and the other figures of that evaluation (JSON; ''
# for none), the talk's events as one JSON array and its last event ('' for none: the
# stream gets one entry a talk, `b`, however many events it carries), the number of
# pointers n, then n x (name, key, step). The record keeps the last event as
# `progress`, the latest evaluation as `val_loss` and `figures`, and points
# `ckpt_<name>` at each key (an immutable object), only forward: a step lower than the
# one published refuses the write. Returns {standing (as _FENCE), the key each pointer
# replaced ('' for none)...}, or false, writing nothing, when fenced out or a pointer
# would go back.
_EVENT = _FENCE + """
local standing = fenced(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], true)
if not standing then return false end
local reply, fields = {standing}, {}
for i = 9, 8 + 3 * tonumber(ARGV[8]), 3 do
  local name = 'ckpt_' .. ARGV[i]
  local was = redis.call('HMGET', KEYS[1], name .. '_step', name)
  if tonumber(ARGV[i + 2]) < tonumber(was[1] or '-1') then return false end
  reply[#reply + 1] = was[2] or ''
  for _, x in ipairs({name, ARGV[i + 1], name .. '_step', ARGV[i + 2]}) do fields[#fields + 1] = x end
end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'b', ARGV[6])
  fields[#fields + 1], fields[#fields + 2] = 'progress', ARGV[7]
end
if ARGV[4] ~= '' then fields[#fields + 1], fields[#fields + 2] = 'val_loss', ARGV[4] end
if ARGV[5] ~= '' then fields[#fields + 1], fields[#fields + 2] = 'figures', ARGV[5] end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
return reply
"""

# End an attempt: a final state (result fields in ARGV[5..]) or, for 'queued', a
# hand-back. Either way the lease goes in the same step, so the next delivery of the
# job's message (which may arrive before this script returns) can take it.
# KEYS job, lease, deadlines, drain, running set, queued zset; ARGV token, ms, state,
# now, pairs...
_RELEASE = _FENCE + """
local function release(state, now)
  local id = redis.call('HGET', KEYS[1], 'id')
  redis.call('HSET', KEYS[1], 'state', state)
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], id)
  redis.call('SREM', KEYS[5], id)
  if state == 'queued' then
    redis.call('ZADD', KEYS[6], now, id)
  else
    redis.call('HSET', KEYS[1], 'finished_at', now)
  end
end
"""
_END = _RELEASE + """
if not fenced(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]) then return 0 end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
release(ARGV[3], ARGV[4])
return 1
"""

# A node that cannot go on with the job (its disk is full) gives it up, released as by _END,
# and it counts as a worker loss: queued again for another node ('queued'), or failed
# at the cap ('failed'); '' when the caller no longer owns it. KEYS as _END; ARGV token,
# lease ms, now, why, max losses.
_GIVE_UP = _RELEASE + """
if not fenced(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]) then return '' end
local lost = redis.call('HINCRBY', KEYS[1], 'worker_losses', 1)
redis.call('HSET', KEYS[1], 'last_loss', ARGV[4])
if lost >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'error', 'worker lost ' .. lost .. ' times; the last could not go on: ' .. ARGV[4])
  release('failed', ARGV[3])
  return 'failed'
end
release('queued', ARGV[3])
return 'queued'
"""

# Cancel: a queued job becomes cancelled at once; a running one is asked to stop.
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return '' end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
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
redis.call('HDEL', KEYS[1], 'error', 'traceback', 'finished_at', 'last_loss')
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
return 'queued'
"""


# A job whose first message could not be sent: failed, if nothing took it meanwhile.
# KEYS job hash, queued zset; ARGV now, id, error.
_UNSENT = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'error', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
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
    worker_losses: int = 0  # deliveries whose worker died mid-job, or gave it up (a full disk)
    last_loss: str | None = None  # why the latest worker that gave it up could not go on
    resumed_from: int | None = None  # step the latest attempt resumed from
    pid: int | None = None  # process running the latest attempt
    sweep: str | None = None  # the sweep this job is a trial of (workers.sweep)
    trial: int | None = None  # its Optuna trial number; a resumed attempt continues the same trial

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
            result=_result(h),
            artifacts=_artifacts(h),
            progress=json.loads(h["progress"]) if h.get("progress") else None,
            worker_losses=int(h.get("worker_losses") or 0),
            last_loss=h.get("last_loss") or None,
            resumed_from=int(h["resumed_from"]) if h.get("resumed_from") else None,
            pid=int(h["pid"]) if h.get("pid") else None,
            sweep=h.get("sweep") or None,
            trial=int(h["trial"]) if h.get("trial") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# Published checkpoints by name, and the artifact label each is shown under.
CHECKPOINT_LABELS = {"best": "checkpoint", "last": "last"}


def _result(h: dict[str, str]) -> dict[str, Any] | None:
    """The job's result. A char LM finished before its characters moved into the result kept
    them in a "vocab" field of the record; they are read into the result, where submit looks."""
    result: dict[str, Any] | None = json.loads(h["result"]) if h.get("result") else None
    if result is not None and h.get("vocab"):
        result.setdefault("vocab", h["vocab"])
    return result


def _artifacts(h: dict[str, str]) -> dict[str, str]:
    """The record's artifacts plus its published checkpoints (live pointers)."""
    out: dict[str, str] = json.loads(h.get("artifacts") or "{}")
    for name, label in CHECKPOINT_LABELS.items():
        if h.get(f"ckpt_{name}"):
            out[label] = h[f"ckpt_{name}"]
    return out


@dataclass(frozen=True)
class Attempt:
    """One attempt's claim on a job: what every fenced write presents."""

    job_id: str
    token: str
    number: int
    lease_seconds: float
    node: str = ""  # the worker node running it: its drain key is read by every fenced write


class Standing(Enum):
    """What a fenced write's reply tells the attempt that made it."""

    LOST = "lost"  # the job is no longer this attempt's: it must stop and write nothing more
    OWNED = "owned"  # carry on
    CANCEL = "cancel"  # the user asked the job to stop (`rnnq cancel`)
    DRAIN = "drain"  # its worker node is shutting down: checkpoint and hand the job back

    def __bool__(self) -> bool:
        return self is not Standing.LOST

    @classmethod
    def of(cls, reply: object) -> Standing:
        """A fenced script's reply: a standing's value, or nil when fenced out."""
        return cls(reply) if reply else cls.LOST


class Fenced(Exception):
    """This attempt no longer owns its job: another attempt does, or it ended or was deleted."""


class PatientRetry(Retry):
    """Retries a command on a lost connection, with backoff, for up to `seconds` from the
    first failure, saying so on stderr: what the CLI uses, so that `watch`, `--wait`
    and every command ride out a Redis restart instead of exiting. A Redis that was
    never reached is an error at once (a wrong URL should not take minutes to say so)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(ExponentialBackoff(cap=4.0, base=0.25), retries=-1,
                         supported_errors=(redis.ConnectionError, redis.TimeoutError))
        self.seconds = seconds
        self.connected = False

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any], is_retryable: Any = None,
                        with_failure_count: bool = False) -> T:
        deadline, failures = None, 0
        while True:
            try:
                result = do()
                self.connected = True
                return result
            except (redis.ConnectionError, redis.TimeoutError) as error:
                failures += 1
                fail(error, failures) if with_failure_count else fail(error)
                if not self.connected or isinstance(error, redis.AuthenticationError):
                    raise
                now = time.monotonic()
                deadline = deadline or now + self.seconds
                if now >= deadline:
                    raise
                print(f"rnnq: lost the connection to Redis ({error}); retrying for up to {deadline - now:.0f} s",
                      file=sys.stderr, flush=True)
                time.sleep(min(self._backoff.compute(failures), deadline - now))


class JobStore:
    def __init__(self, url: str, retry_seconds: float = 0.0, socket_timeout: float = SOCKET_TIMEOUT) -> None:
        """retry_seconds > 0: ride out a lost connection for that long (the CLI). Workers
        keep 0: their writes are not all idempotent, and they retry where it is safe."""
        self.url = url
        self.redis = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=30,
            socket_timeout=socket_timeout,
            **({"retry": PatientRetry(retry_seconds)} if retry_seconds > 0 else {}),
        )
        self._start = self.redis.register_script(_START)
        self._reap = self.redis.register_script(_REAP)
        self._due = self.redis.register_script(_DUE)
        self._renew = self.redis.register_script(_RENEW)
        self._update = self.redis.register_script(_UPDATE)
        self._event = self.redis.register_script(_EVENT)
        self._end = self.redis.register_script(_END)
        self._give_up = self.redis.register_script(_GIVE_UP)
        self._cancel = self.redis.register_script(_CANCEL)
        self._resume = self.redis.register_script(_RESUME)
        self._unsent = self.redis.register_script(_UNSENT)

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

    def create(self, kind: str, spec: dict[str, Any], queue: str, name: str | None = None, job_id: str | None = None,
               sweep: tuple[str, int] | None = None) -> Job:
        """Record a queued job; `sweep` (name, trial number) makes it a sweep's trial, in the same step."""
        job = Job(id=job_id or new_job_id(), kind=kind, state="queued", spec=spec, queue=queue, created_at=time.time(), name=name)
        if sweep is not None:
            job.sweep, job.trial = sweep
        record = {
            "id": job.id,
            "kind": kind,
            "state": job.state,
            "spec": json.dumps(spec),
            "queue": queue,
            "created_at": repr(job.created_at),
            "name": name or "",
            "attempts": 0,
            **({"sweep": job.sweep, "trial": job.trial} if sweep is not None else {}),
        }
        pipe = self.redis.pipeline()
        pipe.hset(_P + f"job:{job.id}", mapping=cast(Any, record))
        pipe.zadd(_P + "jobs", {job.id: job.created_at})
        pipe.zadd(_P + "queued", {job.id: job.created_at})
        pipe.sadd(_P + "queues", queue)
        if name:
            pipe.zadd(_P + f"names:{name}", {job.id: job.created_at})
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
        newest = cast(list[str], self.call(lambda: self.redis.zrevrange(_P + f"names:{job_or_name}", 0, 0)))
        if not newest:
            raise JobNotFound(f"no job with id or name {job_or_name!r}")
        return self.get(newest[0])

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

    def start(self, job_id: str, worker: str, token: str, lease_seconds: float, max_losses: int) -> Attempt | str:
        """Take the job and its lease: an Attempt when this caller now owns it, else the
        job's state ('leased': another attempt runs it; '': deleted)."""
        keys = [_P + f"job:{job_id}", _P + f"lease:{job_id}", _P + "running", _P + "queued", _P + "deadlines"]
        args: list[str | int] = [repr(time.time()), worker, token, int(lease_seconds * 1000), max_losses, job_id]
        with self._reachable():
            reply = str(self._start(keys=keys, args=args))
        if reply.startswith("running:"):
            return Attempt(job_id, token, int(reply.split(":")[1]), lease_seconds, worker)
        return reply

    def _fence_keys(self, a: Attempt) -> list[str]:
        return [_P + f"job:{a.job_id}", _P + f"lease:{a.job_id}", _P + "deadlines", _P + f"drain:{a.node}"]

    def _fence_args(self, a: Attempt) -> list[str | int]:
        return [a.token, int(a.lease_seconds * 1000)]

    def renew_lease(self, a: Attempt) -> Standing:
        """Renew, or re-take after a Redis restart; the attempt's standing, LOST (falsy)
        when the job is no longer ours."""
        with self._reachable():
            return Standing.of(self._renew(keys=self._fence_keys(a), args=self._fence_args(a)))

    def update_owned(self, a: Attempt, **fields: Any) -> None:
        """Update the record of a job this attempt owns; raises Fenced otherwise."""
        pairs = [x for k, v in _encode(fields).items() for x in (k, v)]
        with self._reachable():
            ok = self._update(keys=self._fence_keys(a), args=[*self._fence_args(a), *pairs])
        if not ok:
            raise Fenced(f"job {a.job_id}: attempt {a.number} no longer owns the job")

    def add_event(self, a: Attempt, event: dict[str, Any]) -> Standing:
        """Append a metric event for a job this attempt owns (see add_events)."""
        return self.add_events(a, [event])

    def add_events(self, a: Attempt, events: list[dict[str, Any]]) -> Standing:
        """Append metric events, oldest first, for a job this attempt owns, in one step
        that renews its lease; returns the attempt's standing. Raises Fenced when the
        job is no longer ours."""
        assert events, "no events"
        return self.report(a, events, [])[0]

    def report(self, a: Attempt, events: list[dict[str, Any]],
               checkpoints: list[tuple[str, str, int]]) -> tuple[Standing, dict[str, str]]:
        """Metric events (oldest first) and checkpoint pointers (name, object key, step) of
        a job this attempt owns, in one step that renews its lease.
        Returns the attempt's standing and, by name, the key each pointer replaced ('' for
        none). Raises Fenced, having written nothing, when the job is no longer ours or
        a pointer would go back."""
        evaluations = [e for e in events if e.get("val_loss") is not None]
        last = evaluations[-1] if evaluations else {}  # the latest evaluation, kept between evaluations
        val = repr(last["val_loss"]) if last else ""
        figures = json.dumps(last["figures"]) if last.get("figures") else ""
        keys = [*self._fence_keys(a), _P + f"events:{a.job_id}"]
        pointers = [x for name, key, step in checkpoints for x in (name, key, step)]
        batch, progress = (json.dumps(events), json.dumps(events[-1])) if events else ("", "")
        args = [*self._fence_args(a), EVENTS_MAXLEN, val, figures, batch, progress, len(checkpoints), *pointers]
        with self._reachable():
            reply = self._event(keys=keys, args=args)
        standing = Standing.of(reply[0] if reply else None)
        if not standing:
            raise Fenced(f"job {a.job_id}: attempt {a.number} no longer owns the job, or a checkpoint would go back")
        return standing, {name: str(old) for (name, _, _), old in zip(checkpoints, reply[1:], strict=True)}

    def publish_checkpoint(self, a: Attempt, name: str, key: str, step: int) -> str | None:
        """Point checkpoint `name` at the immutable object `key` (written at `step`), alone
        (see report); returns the key it replaced, None for none. Raises Fenced when this
        attempt no longer owns the job or the published step would go back."""
        return self.report(a, [], [(name, key, step)])[1][name] or None

    def finish(self, a: Attempt, state: str, **fields: Any) -> None:
        """Record how the attempt ended and release its lease, in one fenced step."""
        assert state in FINAL_STATES, state
        self._end_attempt(a, state, fields)

    def hand_back(self, a: Attempt) -> None:
        """A running job goes back to queued (its worker is shutting down); the lease is
        released in the same step, before the caller sends the message again."""
        self._end_attempt(a, "queued", {})

    def give_up(self, a: Attempt, why: str, max_losses: int) -> str:
        """This node cannot go on with the job (its disk is full): release the lease and
        count a worker loss, in one fenced step; the job is queued again ('queued': the
        caller sends it) or failed at the cap ('failed'). Raises Fenced when this attempt
        no longer owns the job."""
        keys = [*self._fence_keys(a), _P + "running", _P + "queued"]
        with self._reachable():
            outcome = str(self._give_up(keys=keys, args=[*self._fence_args(a), repr(time.time()), why, max_losses]))
        if not outcome:
            raise Fenced(f"job {a.job_id}: attempt {a.number} no longer owns the job")
        return outcome

    def _end_attempt(self, a: Attempt, state: str, fields: dict[str, Any]) -> None:
        pairs = [x for k, v in _encode(fields).items() for x in (k, v)]
        keys = [*self._fence_keys(a), _P + "running", _P + "queued"]
        with self._reachable():
            ok = self._end(keys=keys, args=[*self._fence_args(a), state, repr(time.time()), *pairs])
        if not ok:
            raise Fenced(f"job {a.job_id}: attempt {a.number} no longer owns the job")

    def reap(self, max_losses: int) -> list[Job]:
        """Running jobs whose lease lapsed, now queued again (the caller re-sends them).
        Only the jobs whose lease deadline has passed are looked at (see _DUE)."""
        with self._reachable():
            ids = cast(list[str], self._due(keys=[_P + "deadlines", _P + "running"]))
            requeued = []
            for job_id in ids:
                keys = [_P + f"job:{job_id}", _P + f"lease:{job_id}", _P + "running", _P + "queued", _P + "deadlines"]
                if self._reap(keys=keys, args=[repr(time.time()), max_losses, job_id]) == "requeue":
                    requeued.append(job_id)
        return [self.get(job_id) for job_id in requeued]

    def take_turn(self, what: str, seconds: float, heartbeat: tuple[str, float] | None = None) -> bool:
        """True for the one caller per `seconds` across the cluster (a key set NX with a
        TTL). With `heartbeat` (node, ttl): that worker node is alive for ttl seconds
        more, said in the same round trip (what every node sends each reap period)."""
        pipe = self.redis.pipeline(transaction=False)
        if heartbeat:
            node, ttl = heartbeat
            pipe.set(_P + f"worker:{node}", repr(time.time()), px=int(ttl * 1000))
        pipe.set(_P + f"turn:{what}", "1", nx=True, px=max(1, int(seconds * 1000)))
        return bool(self.call(pipe.execute)[-1])

    def queued_since(self, before: float) -> list[str]:
        """Jobs that have been queued since before `before` (epoch seconds)."""
        return self.call(lambda: cast(list[str], self.redis.zrangebyscore(_P + "queued", "-inf", before)))

    def redis_uptime(self) -> tuple[str, float]:
        """The server's run id and uptime in seconds: a new run id or a short uptime
        means Redis restarted (or failed over)."""
        info = cast(dict[str, Any], self.call(lambda: self.redis.info("server")))
        return str(info.get("run_id", "")), float(info.get("uptime_in_seconds", 0))

    def cancel(self, job_id: str) -> str:
        """'cancelled' (was queued), 'requested' (running: stops at its next step) or the final state."""
        with self._reachable():
            return str(self._cancel(keys=[_P + f"job:{job_id}", _P + "queued"], args=[repr(time.time()), job_id]))

    def cancel_requested(self, job_id: str) -> bool:
        return self.call(lambda: self.redis.hget(_P + f"job:{job_id}", "cancel_requested")) == "1"

    def reopen(self, job_id: str) -> str:
        """Put a cancelled or failed job back to queued; returns its (new) state."""
        keys = [_P + f"job:{job_id}", _P + f"lease:{job_id}", _P + "queued"]
        with self._reachable():
            return str(self._resume(keys=keys, args=[repr(time.time()), job_id]))

    def fail_unsent(self, job_id: str, error: str) -> None:
        """Fail a just-created job whose message could not be sent (if still queued)."""
        with self._reachable():
            self._unsent(keys=[_P + f"job:{job_id}", _P + "queued"], args=[repr(time.time()), job_id, error])

    def set_draining(self, node: str, on: bool) -> None:
        """Ask the node's running jobs to hand back (their next fenced write says DRAIN)."""
        key = _P + f"drain:{node}"
        self.call(lambda: self.redis.set(key, "1", ex=3600) if on else self.redis.delete(key))

    def draining(self, node: str) -> bool:
        """Is the node shutting down (set_draining)?"""
        return bool(self.call(lambda: self.redis.exists(_P + f"drain:{node}")))

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
        """An unfenced update of an existing record (submit-side bookkeeping only)."""
        self.call(lambda: self.redis.hset(_P + f"job:{job_id}", mapping=cast(Any, _encode(fields))))

    def events(self, job_id: str, after: str = "0-0", block_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Metric events after the given stream id; waits up to block_ms for new ones."""
        with self._reachable():
            reply = cast(Any, self.redis.xread({_P + f"events:{job_id}": after}, block=block_ms, count=10_000))
        if not reply:
            return []
        # One entry a talk holds its events as a JSON array (`b`); an entry written by a
        # version before that holds one event (`m`). Every event of an entry carries the
        # entry's id, so a reader resumes after the last one it saw.
        return [(entry_id, event) for entry_id, fields in reply[0][1]
                for event in (json.loads(fields["b"]) if "b" in fields else [json.loads(fields["m"])])]

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        pipe = self.redis.pipeline()
        pipe.delete(_P + f"job:{job_id}", _P + f"events:{job_id}", _P + f"lease:{job_id}")
        pipe.srem(_P + "running", job_id)
        pipe.zrem(_P + "deadlines", job_id)
        pipe.zrem(_P + "jobs", job_id)
        pipe.zrem(_P + "queued", job_id)
        if job.name:  # the name now means its newest remaining job
            pipe.zrem(_P + f"names:{job.name}", job_id)
        with self._reachable():
            pipe.execute()


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v)) for k, v in fields.items()}
