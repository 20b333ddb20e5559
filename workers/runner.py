"""What a worker does with a job: take its lease, load spec and inputs, call rnn_tasks,
store results.

Everything a job can do wrong ends here as a failed record with a readable reason and
the traceback; nothing propagates into Celery, so a bad job never takes down the
worker or its other jobs. torch is imported only inside the job functions. The job's
task module is looked up by name (rnn_tasks.task.lookup) and what it takes comes from its
spec class: no task is special here, the language model included.

A training job stops early, at its next step, for three reasons: the user cancelled it
(ends `cancelled`), its worker is shutting down (checkpoint, back to the queue, resumed
elsewhere), or it lost its lease (another process owns it now: leave the record alone).
A sweep's trial also stops when the pruner says so at an evaluation (ends `succeeded`,
`stopped_by: pruned`; workers.sweep).

How a job hears of the first two, without polling Redis for them. Every fenced write
renews the lease and answers with the attempt's Standing (workers.jobstore). A job
talks to Redis once per CHECK_SECONDS, and that talk is also the stop check:

    training loop   on_step every 0.5 s ──> kept until the next talk: every evaluation's
                                            report, and the latest of the others
                    on_checkpoint ────────> kept until the next talk: the newest file of
                                            each name (best, last)
    should_stop()   every step: news older than CHECK_SECONDS? upload the checkpoints
                    kept, then write the reports and the checkpoints' pointers in one
                    script (or, with nothing kept, renew the lease); the reply is the news
    lease thread    renews only when no fenced write did for a third of the TTL

So a training job's progress reaches its event stream (what `rnnq watch` shows) every
CHECK_SECONDS, every evaluation included, however often it evaluates; a checkpoint is
published within CHECK_SECONDS of being written, however often it checkpoints; its
lease is renewed by those writes; a cancel or a drain is seen within CHECK_SECONDS plus
one step; and the job's requests to Redis do not grow with its cadence. The first
report is written at once; what is kept when training ends is written before the
result, the checkpoints waiting for Redis if it is away.
"""

from __future__ import annotations

import _thread
import errno
import json
import logging
import os
import shutil
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rnn_tasks.spec import EvalSpec, GenerateSpec, PredictSpec, TrainSpec, train_spec_class, train_spec_from_dict
from workers import dispatch, inputcache, metrics
from workers import settings as settings_mod
from workers.artifacts import ArtifactStore, job_key, open_store
from workers.jobstore import Attempt, Fenced, Job, JobStore, Standing

if TYPE_CHECKING:  # torch: imported only inside the job functions
    from rnn_tasks.loop import StepMetrics

log = logging.getLogger("rnnq.worker")

Outcome = tuple[dict[str, Any], dict[str, str]]  # result summary, artifact keys
# A running job hears from its record at least this often (cancel, drain, lease loss),
# and writes a progress event at about this pace (its evaluations besides).
CHECK_SECONDS = 2.0
DISK_FULL = "disk_full"  # the stop reason of an attempt given up for lack of room
LOW_DISK_BYTES = 64 << 20  # a node's disk with less free than this takes no job after a give-up ...
DISK_PAUSE_SECONDS = 60.0  # ... for up to this long (workers.runner._wait_for_room)
FINISH_RETRY_SECONDS = 120.0  # keep trying to record a result while Redis restarts


def _now() -> float:
    """Seconds on a clock that keeps counting while the machine is suspended (Linux's
    CLOCK_BOOTTIME; monotonic elsewhere), so a host that slept past its lease does not
    take an old renewal for a recent one."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


class Lease:
    """An attempt's hold on its job, and the latest news from the job's record.

    Every fenced write renews the lease, or leaves it when two thirds of its TTL are
    left (jobstore._FENCE). The Lease keeps the time of the last one that succeeded
    (`proven`) and of the last reply that carried the attempt's Standing (`heard`, with
    `standing`). Nobody can take a job while its lease is alive, so the attempt owns the
    job for at least two thirds of a lease TTL after `proven`; a third is taken as
    certain (`owned_lately`).

    A thread renews the lease when no fenced write did for a third of its TTL. A
    renewal that fails because Redis is unreachable is retried a third of a TTL later:
    the job keeps running through an outage, and the first renewal after it re-takes
    the lease if nobody else took the job (JobStore.renew_lease). A reply that says "not
    yours" marks the lease lost, and the job stops at its next check.
    """

    def __init__(self, store: JobStore, attempt: Attempt) -> None:
        self.store, self.attempt = store, attempt
        self.lost = False
        self.standing = Standing.OWNED
        self.proven = _now()  # _START has just given the attempt its lease
        self.heard = -float("inf")  # nothing heard yet: a cancel may predate the start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{attempt.job_id}", daemon=True)

    def renew(self) -> bool:
        """Renew now; False when the job is no longer ours."""
        sent = _now()
        self._hear(self.store.renew_lease(self.attempt), sent)
        return not self.lost

    def report(self, events: list[dict[str, Any]], checkpoints: list[tuple[str, str, int]]) -> dict[str, str]:
        """Progress events and checkpoint pointers, fenced, in one step; the reply is news
        like a renewal's. Returns the key each pointer replaced, by name; raises Fenced
        (the lease is then lost) when the job is no longer ours."""
        sent = _now()
        try:
            standing, replaced = self.store.report(self.attempt, events, checkpoints)
        except Fenced:
            self._hear(Standing.LOST, sent)
            raise
        self._hear(standing, sent)
        return replaced

    def proved(self, sent: float) -> None:
        """A fenced write sent at `sent` (_now) succeeded: the lease lives for two thirds of a TTL after it."""
        self.proven = max(self.proven, sent)

    def owned_lately(self) -> bool:
        """The lease was renewed less than a third of its TTL ago, so it is still ours."""
        return not self.lost and _now() - self.proven < self.attempt.lease_seconds / 3

    def _hear(self, standing: Standing, sent: float) -> None:
        if not standing:
            if not self.lost:
                log.error("job %s: lease lost; stopping this copy", self.attempt.job_id)
            self.lost = True
            return
        self.proved(sent)
        self.standing, self.heard = standing, max(self.heard, sent)

    def _beat(self) -> None:
        period = self.attempt.lease_seconds / 3
        wait = period
        while not self.lost and not self._stop.wait(wait):
            wait = self.proven + period - _now()
            if wait > 0:
                continue  # a fenced write renewed it meanwhile
            wait = period
            try:
                self.renew()
            except Exception:
                log.warning("job %s: could not renew lease", self.attempt.job_id, exc_info=True)

    def __enter__(self) -> Lease:  # noqa: PYI034 - final in practice
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Nothing to release here: finish and hand_back release the lease in the same
        # step that records the end; a copy that lost its job must not touch it.
        self._stop.set()
        self._thread.join()


@dataclass
class _Control:
    """Why a job should stop early; polled by the training loop's should_stop.

    The check is also when the job talks to its record: when the news is older than
    CHECK_SECONDS it uploads the checkpoints the loop wrote since the last talk, and
    writes them (their pointers) with the progress reports kept since then, in one
    script; or renews the lease when there is nothing to write; and reads the reply.
    So a job's requests do not grow with how often it evaluates or checkpoints.
    """

    job_id: str
    node: str
    lease: Lease
    artifacts: ArtifactStore  # where checkpoints go
    reason: str | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)  # progress reports not yet written
    written: dict[str, tuple[Path, int]] = field(default_factory=dict)  # checkpoints to upload: label -> file, step
    uploaded: dict[str, tuple[str, int]] = field(default_factory=dict)  # to publish: label -> object key, step
    retired: list[str] = field(default_factory=list)  # replaced objects, deleted one publication later
    _tried: float = -float("inf")  # the last talk or flush, answered or not (Redis may be down)

    def should_stop(self) -> bool:
        now = _now()
        # By the last talk, not by the last news: a lease renewed more often than this (a
        # short lease's thread) must not starve the talks, which carry the progress and
        # the checkpoints.
        if self.reason is None and now - self._tried >= CHECK_SECONDS:
            self._tried = now
            self._talk()
        if self.lease.lost:
            self.reason = "lease_lost"
        elif self.reason is None and self.lease.standing is Standing.CANCEL:
            self.reason = "cancelled"
        elif self.reason is None and self.lease.standing is Standing.DRAIN:
            self.reason = "draining"
        return self.reason is not None

    def keep(self, event: dict[str, Any]) -> None:
        """Keep a report for the next talk: every evaluation's, and the latest other one."""
        if self.pending and "val_loss" not in self.pending[-1]:
            self.pending.pop()  # superseded
        self.pending.append(event)

    def checkpoint(self, name: str, path: Path, step: int) -> None:
        """on_checkpoint for the training loop: the file at `path` (the loop writes each
        name to one path) is published at the next talk, as an immutable object named by
        attempt and step. A newer one of the same name before then supersedes it unsent."""
        self.written[name.split(".")[0]] = (path, step)  # best | last

    def flush(self) -> None:
        """Write what is kept now: the first report; and, as training ends, the last
        reports with the checkpoints not yet published, which wait for Redis (up to
        FINISH_RETRY_SECONDS) so that no result points past them. Raises Fenced when the
        job is no longer ours and a checkpoint was waiting."""
        events, self.pending = self.pending, []
        self._tried = _now()
        if self.written or self.uploaded:
            _retry(lambda: self._write(events), "publish checkpoints")
            return
        if events:
            try:
                self._write(events)
            except Fenced:
                pass  # the lease is lost: the next check stops the job
            except Exception:
                log.warning("could not record progress of job %s", self.job_id, exc_info=True)

    def _talk(self) -> None:
        events, self.pending = self.pending, []
        try:
            self._write(events)
        except Fenced:
            pass  # the lease is lost: should_stop says so
        except Exception:
            log.warning("job %s: could not check for stop requests", self.job_id, exc_info=True)

    def _write(self, events: list[dict[str, Any]]) -> None:
        """Upload the checkpoints written since the last talk, then one fenced script:
        the events and every pointer not yet published (a Redis outage keeps them for
        the next talk; training goes on meanwhile). A copy that lost the job uploads
        nothing more and deletes what it uploaded."""
        if self.lease.lost:
            self._discard()
            raise Fenced(f"job {self.job_id}: attempt {self.lease.attempt.number} no longer owns the job")
        self._upload()
        pointers = [(label, key, step) for label, (key, step) in self.uploaded.items()]
        if not events and not pointers:
            self.lease.renew()
            return
        try:
            replaced = self.lease.report(events, pointers)
        except Fenced:
            self._discard()
            raise
        self.uploaded.clear()
        while self.retired:
            self.artifacts.delete(self.retired.pop())
        self.retired = [old for label, key, _ in pointers if (old := replaced[label]) and old != key]

    def _upload(self) -> None:
        if not self.written:
            return
        # No upload for a job that is no longer ours: a fenced write renewed the lease
        # lately, or a renewal now says so (a copy that pauses between this check and
        # its upload uploads, but cannot publish; the object is then deleted).
        if not self.lease.owned_lately() and not self.lease.renew():
            self._discard()
            raise Fenced(f"job {self.job_id}: attempt {self.lease.attempt.number} no longer owns the job")
        while self.written:
            label, (path, step) = next(iter(self.written.items()))
            key = job_key(self.job_id, f"ckpt/{label}-a{self.lease.attempt.number}-s{step}-{uuid.uuid4().hex[:6]}"
                                       ".safetensors")
            self.artifacts.put_file(key, path)
            del self.written[label]
            superseded = self.uploaded.get(label)
            self.uploaded[label] = (key, step)
            if superseded:
                self.artifacts.delete(superseded[0])  # never published

    def _discard(self) -> None:
        self.written.clear()
        for key, _ in self.uploaded.values():
            self.artifacts.delete(key)
        self.uploaded.clear()


@dataclass
class Run:
    """What a job function gets: the record as it started, its attempt, where to read
    and write, and the stop checks."""

    job: Job
    attempt: Attempt
    store: JobStore
    artifacts: ArtifactStore
    control: _Control
    scratch: Path  # this attempt's private local directory (checkpoints are written here first)
    input_cache: Path  # this node's cache of content-addressed inputs
    max_losses: int  # worker losses before the job fails (RNNQ_MAX_WORKER_LOSSES)

    def input(self, key: str) -> bytes:
        """A corpus or input file, verified against its hash; downloaded once per node."""
        return inputcache.read_input(self.artifacts, key, self.input_cache)


def run(kind: str, job_id: str, worker: str) -> None:
    s = settings_mod.resolve()
    store = JobStore(s.redis_url)
    artifacts = open_store(s.artifacts)
    token = f"{worker}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    attempt = store.start(job_id, worker, token, s.lease_seconds, s.max_worker_losses)
    if not isinstance(attempt, Attempt):
        log.warning("job %s is %s; not running this delivery", job_id, attempt or "unknown (deleted?)")
        return
    job = store.get(job_id)
    log.info("job %s (%s) started, attempt %d", job_id, kind, attempt.number)
    began = time.monotonic()
    metrics.job_started(kind, job.queue, worker, time.time() - job.created_at if attempt.number == 1 else None)
    ended: str | None = None
    control: _Control | None = None
    scratch = s.home / "scratch" / f"{job_id}-a{attempt.number}-{uuid.uuid4().hex[:6]}"
    try:
        with Lease(store, attempt) as lease:
            _share_cores(s.worker_processes)
            control = _Control(job_id, worker, lease, artifacts)
            ended = _attempt(Run(job, attempt, store, artifacts, control, scratch, s.input_cache,
                                 s.max_worker_losses), kind)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        metrics.job_ended(kind, job.queue, worker, ended, time.monotonic() - began)
    if job.sweep and ended is not None:
        _next_trials(store, job.sweep)
    if control is not None and control.reason == DISK_FULL:
        _wait_for_room(store, worker, s.home)


def _wait_for_room(store: JobStore, node: str, home: Path) -> None:
    """After giving a job up for lack of room: while this node's own disk (its home:
    scratch and input cache) has less than LOW_DISK_BYTES free, this pool process takes
    no job, for up to DISK_PAUSE_SECONDS or until the node drains. Otherwise a node whose
    disk filled would take every job from the queue and give each one up at once, using
    up their worker losses while healthy nodes were busy. A full artifact store is not
    this node's: there is room here, and the job was simply given up."""
    deadline = time.monotonic() + DISK_PAUSE_SECONDS
    paused = False
    while time.monotonic() < deadline:
        try:
            if shutil.disk_usage(home).free >= LOW_DISK_BYTES or store.draining(node):
                break
        except OSError:
            break
        if not paused:
            log.warning("this node's disk (%s) is full: taking no job for up to %.0f s", home, DISK_PAUSE_SECONDS)
            paused = True
        time.sleep(1.0)


def _share_cores(processes: int) -> None:
    """Tell rnn_tasks how many pool processes share this node's cores, so this job's CPU
    threads are its share. It imports torch (seconds in a fresh pool process), so it is
    called only inside the Lease block: before it, nothing renews the lease yet and a
    slow import lets it lapse, and the reaper takes the live job back."""
    from rnn_tasks import device as devices

    devices.share_cores(processes)


def _next_trials(store: JobStore, sweep: str) -> None:
    """A trial ended: tell its study and queue the sweep's next trials. Best effort: the
    reaper advances every sweep with work to do, so a failure here only delays it."""
    from workers import sweep as sweeps

    try:
        sweeps.advance(store, sweep, lambda job_id, kind, queue: dispatch.send_job(store, job_id, kind, queue))
    except Exception:  # the job is recorded; the sweep catches up later
        log.warning("could not advance sweep %s", sweep, exc_info=True)


def _attempt(r: Run, kind: str) -> str | None:
    """Run the job function and record how it ended; returns the final state, None when
    it did not end here (handed back, or this copy lost the job)."""
    try:
        r.store.update_owned(r.attempt, pid=os.getpid())
        result, keys = _KINDS[kind](r)
        return _settle(r, result, keys)
    except Fenced:
        log.warning("job %s: attempt %d no longer owns the job; it wrote nothing more", r.job.id, r.attempt.number)
        return None
    except Exception as exc:
        if r.control.lease.lost:
            log.warning("job %s: attempt %d failed after losing the job; not recorded", r.job.id, r.attempt.number)
            return None
        if isinstance(exc, Interrupted):
            return _settle(r, {"partial": True}, {})
        if (full := _disk_full(exc)) is not None:
            return _give_up(r, full)
        log.exception("job %s failed", r.job.id)
        reason, trace = _reason(exc), traceback.format_exc()
        try:
            _retry(lambda: r.store.finish(r.attempt, "failed", error=reason, traceback=trace), "record failure")
        except Fenced:
            log.warning("job %s: attempt %d no longer owns the job; its failure not recorded", r.job.id,
                        r.attempt.number)
            return None
        return "failed"


def _disk_full(exc: BaseException) -> OSError | None:
    """The "no space" error (ENOSPC, EDQUOT) behind `exc`, if one is: raised, or the cause
    or context of what was raised (an artifact or checkpoint error wrapping it)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _give_up(r: Run, exc: OSError) -> str | None:
    """A full disk (this node's scratch or input cache, or the artifact store) is not the
    job's fault: hand it back, counted as a worker loss, and another node (or this one,
    once there is room) resumes it from its last published checkpoint. At the loss cap it
    fails, naming the disk, and `rnnq resume` goes on from that checkpoint once there is
    room. Returns the final state, None when the job went back to the queue."""
    why = f"{_reason(exc)} (on {r.control.node})"
    log.warning("job %s: %s; giving it back", r.job.id, why)
    r.control.reason = DISK_FULL
    try:
        r.control._discard()  # uploaded, never published: nobody will point at them
    except Exception:
        log.warning("job %s: could not delete its unpublished checkpoints", r.job.id, exc_info=True)
    try:
        outcome = _retry(lambda: r.store.give_up(r.attempt, why, r.max_losses), "give the job back")
    except Fenced:
        log.warning("job %s: attempt %d no longer owns the job", r.job.id, r.attempt.number)
        return None
    metrics.job_given_up(r.job.kind, r.job.queue, r.control.node, DISK_FULL)
    if outcome == "queued":
        dispatch.send_job(r.store, r.job.id, r.job.kind, r.job.queue)  # after the lease is gone, as a drain
        return None
    return "failed"


def _settle(r: Run, result: dict[str, Any], keys: dict[str, str]) -> str | None:
    """Record how the job ended, according to why it stopped (every write fenced)."""
    job, reason = r.job, r.control.reason
    if reason == "lease_lost" or r.control.lease.lost:
        log.warning("job %s: another worker owns it now; result of this copy dropped", job.id)
        return None
    if reason == "draining":
        log.info("job %s: worker shutting down; checkpointed and handed back to the queue", job.id)
        _retry(lambda: r.store.hand_back(r.attempt), "hand back")
        dispatch.send_job(r.store, job.id, job.kind, job.queue)  # after the lease is gone; see jobstore
        return None
    if reason == "cancelled":
        _retry(lambda: r.store.finish(r.attempt, "cancelled", result=result, artifacts=keys), "record cancel")
        return "cancelled"
    if reason == "pruned":  # a sweep's pruner stopped a weak trial: it succeeded, with its best checkpoint
        log.info("job %s: pruned by its sweep", job.id)
    _retry(lambda: r.store.finish(r.attempt, "succeeded", result=result, artifacts=keys), "record result")
    log.info("job %s succeeded", job.id)
    return "succeeded"


def _retry(action: Callable[[], T], what: str) -> T:
    """Retry a record update while Redis is unreachable (a restart), up to a limit; its
    answer. A fenced refusal is an answer, not an outage, and a full disk is not Redis's:
    both are raised at once."""
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    while True:
        try:
            return action()
        except Fenced:
            raise
        except Exception as exc:
            if time.monotonic() > deadline or _disk_full(exc) is not None:
                raise
            log.warning("could not %s; retrying", what, exc_info=True)
            time.sleep(1.0)


class Interrupted(Exception):
    """An inference job was asked to stop (cancel or drain) between two of its steps."""


class _Interruptible:
    """Runs an inference call that has no stop checks of its own so that a cancel or a
    drain stops it within about CHECK_SECONDS: a watcher thread polls the job's stop
    checks and raises Interrupted in the main thread (through a signal handler, the
    only way to reach it) while the call runs, never after it returned."""

    def __init__(self, control: _Control) -> None:
        self.control, self.armed = control, False
        self._done = threading.Event()

    def __call__(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is not threading.main_thread():
            return fn()  # signal handlers need the main thread (always so in a pool child)
        previous = signal.signal(signal.SIGUSR2, self._raise)
        watcher = threading.Thread(target=self._watch, name="rnnq-stop-watch", daemon=True)
        self.armed = True
        watcher.start()
        try:
            return fn()
        finally:
            self.armed = False
            self._done.set()
            watcher.join()
            signal.signal(signal.SIGUSR2, previous)

    def _raise(self, *_: object) -> None:
        if self.armed:
            self.armed = False
            raise Interrupted("stopped by request")

    def _watch(self) -> None:
        while not self._done.wait(CHECK_SECONDS / 4):  # should_stop talks to Redis only when due
            if self.armed and self.control.should_stop():
                _thread.interrupt_main(signal.SIGUSR2)
                return


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def _reporter(r: Run) -> Callable[[StepMetrics], None]:
    """on_step for the training loop: progress goes to the worker's Prometheus counters
    at once, and to the job's event stream tagged with the attempt (so the log shows
    which delivery trained which steps) at the next stop check, which writes every
    evaluation's report and the latest other one (see the module docstring); the first
    report is written at once, so `rnnq watch` shows progress from the start. A fenced
    refusal stops this copy."""
    job = r.job
    meter = metrics.TrainingMeter(job.kind, job.queue, r.control.node)
    first = True

    def on_step(report: StepMetrics) -> None:
        nonlocal first
        allocated, reserved = report.memory_allocated, report.memory_reserved
        memory = None if allocated is None or reserved is None else (allocated, reserved)
        meter.report(report.step, report.tokens, report.elapsed, report.device, memory)
        event = {k: v for k, v in asdict(report).items() if v is not None}
        event["time"] = time.time()
        event["attempt"] = r.attempt.number
        r.control.keep(event)
        if first:
            first = False
            r.control.flush()

    return on_step


S = TypeVar("S", TrainSpec, GenerateSpec, PredictSpec, EvalSpec)
T = TypeVar("T")


def _on_worker_device(spec: S) -> S:
    """A job that asked for device "auto" runs on the worker's --device, if it set one."""
    device = settings_mod.resolve().worker_device
    if device and spec.device == "auto":
        return replace(spec, device=device)
    return spec


def _train(r: Run) -> Outcome:
    from rnn_tasks import checkpoint, task
    from rnn_tasks.loop import BEST, LAST, Callbacks

    job, spec = r.job, _on_worker_device(train_spec_from_dict(r.job.spec))
    # The loop writes into this attempt's own directory; what the job has published
    # (possibly by an earlier attempt) is fetched there first, so it resumes from it.
    checkpoint_dir = r.scratch / "checkpoints"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for label, name in (("checkpoint", BEST), ("last", LAST)):
        if label in job.artifacts:
            r.artifacts.get_file(job.artifacts[label], checkpoint_dir / name)
    resume = checkpoint_dir / LAST if (checkpoint_dir / LAST).exists() else None
    if resume is not None:
        step = checkpoint.read(resume).step
        r.store.update_owned(r.attempt, resumed_from=step)
        log.info("job %s resumes from its checkpoint at step %d", job.id, step)
    on_step = _reporter(r)
    if job.sweep is not None:  # a sweep's trial: evaluations go to its Optuna trial, which may prune it
        from workers.pruning import Pruning

        on_step = Pruning(r.store, job, owned=lambda: not r.control.lease.lost, stop=lambda: _stop(r, "pruned")).wrap(
            on_step)
    callbacks = Callbacks(on_step=on_step, should_stop=r.control.should_stop, on_checkpoint=r.control.checkpoint)
    files = {name: r.input(key) for name, key in spec.input_keys().items()}
    if resume is None:  # a fresh run starts from these jobs' models; a resumed one has its own weights
        files.update({name: _source_checkpoint(r, job_id, name)[1].read_bytes()
                      for name, job_id in spec.source_jobs().items()})
    summary = task.lookup(spec.task).train(spec, files, callbacks, checkpoint_dir, resume)
    r.control.flush()  # the final evaluation's report and checkpoints, before the result is recorded
    if r.control.reason == "pruned" and summary.get("stopped_by") != "requested":
        r.control.reason = None  # pruned at the final evaluation: the trial had already run its course
    summary["stopped_by"] = r.control.reason or summary.get("stopped_by")
    return summary, {}


def _stop(r: Run, reason: str) -> None:
    if r.control.reason is None:  # cancel, drain and lease loss take precedence
        r.control.reason = reason


def _source_checkpoint(r: Run, source_id: str, name: str = "source") -> tuple[Job, Path]:
    """A training job and a local copy (scratch/<name>.safetensors) of its best checkpoint."""
    source = r.store.get(source_id)
    if "checkpoint" not in source.artifacts:
        raise ValueError(f"training job {source_id} has no checkpoint (state {source.state})")
    return source, r.artifacts.get_file(source.artifacts["checkpoint"], r.scratch / f"{name}.safetensors")


def _options(r: Run, request: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The request's options that the task takes; an "lm" job id becomes its checkpoint's path."""
    from rnn_tasks import task

    options = task.options(request, names)
    if "lm" in options:
        options["lm"] = _source_checkpoint(r, options["lm"], "lm")[1]
    return options


def _predict(r: Run) -> Outcome:
    from rnn_tasks import task

    spec = _on_worker_device(PredictSpec.from_dict(r.job.spec))
    source, path = _source_checkpoint(r, spec.source)
    kind = source.spec.get("task", "lm")
    request = spec.to_dict()
    if spec.input is not None:
        data = r.input(spec.input)
    elif spec.texts:  # inline texts are lines, whatever format says
        data, request["format"] = "\n".join(spec.texts).encode("utf-8"), "lines"
    else:  # no inputs: continue from the training data (a forecast extends its series)
        data = r.input(source.spec["data"])
    module = task.lookup(kind)
    options = _options(r, request, train_spec_class(kind).PREDICT_OPTIONS)
    result = _Interruptible(r.control)(lambda: module.predict(path, data, options, spec.device))
    key = job_key(r.job.id, "predictions.json")
    r.artifacts.put_bytes(key, json.dumps(result, indent=1).encode())
    return {**result, "source": spec.source, "task": kind}, {"predictions_file": key}


def _eval(r: Run) -> Outcome:
    from rnn_tasks import task

    spec = _on_worker_device(EvalSpec.from_dict(r.job.spec))
    source, path = _source_checkpoint(r, spec.source)
    kind = source.spec.get("task", "lm")
    files = {"data": r.input(spec.data)}
    if spec.target is not None:
        files["target"] = r.input(spec.target)
    module = task.lookup(kind)
    options = _options(r, spec.to_dict(), train_spec_class(kind).EVAL_OPTIONS)
    figures = _Interruptible(r.control)(lambda: module.evaluate(path, files, spec.device, options))
    return {**figures, "source": spec.source, "task": kind}, {}


def _generate(r: Run) -> Outcome:
    from rnn_tasks import task

    spec = _on_worker_device(GenerateSpec.from_dict(r.job.spec))
    source, path = _source_checkpoint(r, spec.source)
    module = task.generator(source.spec.get("task", "lm"))
    result = module.generate(path, spec, r.control.should_stop)
    result["partial"] = result["partial"] or r.control.reason is not None  # cancelled or handed back
    key = job_key(r.job.id, "samples.json")
    body = {"prompts": result["prompts"], "texts": result["texts"], "partial": result["partial"]}
    r.artifacts.put_bytes(key, json.dumps(body, indent=1).encode())
    metrics.tokens_generated(r.job.kind, r.job.queue, r.control.node, result["tokens"])
    return {**result, "source": spec.source}, {"samples": key}


_KINDS: dict[str, Callable[[Run], Outcome]] = {
    "train": _train,
    "generate": _generate,
    "predict": _predict,
    "eval": _eval,
}
