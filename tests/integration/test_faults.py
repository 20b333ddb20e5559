"""Fault injection against real processes: lost workers, duplicates, cancel, drain."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.integration.conftest import Env, Worker, start_worker, stop
from tests.support import job_final, job_step, make_corpus, wait_for, wait_state
from workers.jobstore import JobStore

pytestmark = pytest.mark.integration

# Steps of a job that a fault must find still running. A job reports its step every 2 s
# (runner.CHECK_SECONDS) and notices a cancel or a drain within 2 s more, and one machine
# here trains this model at 640 steps/s: 3,000 steps ended before a cancel landed.
LONG = 8000

# Short leases so lost workers are noticed in seconds, not the default half minute.
FAST = {"RNNQ_LEASE_SECONDS": "2", "RNNQ_REAP_SECONDS": "0.5", "RNNQ_MAX_WORKER_LOSSES": "3"}
MODEL = ["--hidden", "24", "--embed", "8", "--seq-len", "16", "--batch-size", "4", "--eval-every", "100000",
         "--patience", "1000", "--checkpoint-every", "25"]


@pytest.fixture
def fast(env: Env) -> Env:
    env.vars.update(FAST)
    env.vars["RNNQ_VISIBILITY_TIMEOUT"] = "3600"
    return env


@pytest.fixture
def queue() -> str:
    return f"faults-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def workers(fast: Env, queue: str) -> Iterator[list[Worker]]:
    started: list[Worker] = []

    def spawn(n: int = 1) -> list[Worker]:
        for _ in range(n):
            started.append(start_worker(fast.vars, fast.tmp / f"w{len(started)}.log", queues=queue))
        return started

    yield spawn  # type: ignore[misc]
    for w in started:
        stop(w.proc)


def _submit(env: Env, queue: str, steps: int) -> str:
    path = env.tmp / "corpus.txt"
    path.write_text(make_corpus(20_000))
    res = env.cli("train", str(path), *MODEL, "--max-steps", str(steps), "--queue", queue, "--json")
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["job_id"])


def _store(env: Env) -> JobStore:
    return JobStore(env.vars["RNNQ_REDIS_URL"])


def _step(env: Env, job_id: str) -> int:
    return job_step(_store(env), job_id)


def _steps_seen(env: Env, job_id: str) -> list[int]:
    return [int(e["step"]) for _, e in _store(env).events(job_id)]


def _parent(pid: int) -> int:
    """The parent of process `pid` (/proc/PID/stat: the field after the state)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _wait_state(env: Env, job_id: str, states: tuple[str, ...], timeout: float = 300) -> None:
    wait_state(_store(env), job_id, states, timeout)


def test_kill_9_worker_mid_training_resumes_elsewhere(fast: Env, queue: str, workers) -> None:  # type: ignore[no-untyped-def]
    pool = workers(2)
    job_id = _submit(fast, queue, steps=LONG)
    wait_for(lambda: _step(fast, job_id) >= 100, 120, "training to pass step 100")
    running_on = _store(fast).get(job_id).worker
    victim = next(w for w in pool if running_on and running_on.split("@")[0] in w.proc.args)  # type: ignore[operator]
    before_kill = max(_steps_seen(fast, job_id))
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the whole worker: parent and pool child
    _wait_state(fast, job_id, ("succeeded", "failed"))
    record = _store(fast).get(job_id)
    assert record.state == "succeeded", record.error
    assert record.worker_losses == 1 and record.attempts == 2
    assert record.worker != running_on
    assert record.result is not None and record.result["steps"] == LONG
    assert record.resumed_from is not None and record.resumed_from > 0
    # No step range trained twice beyond one checkpoint interval.
    assert before_kill - record.resumed_from <= 25


def test_job_that_kills_its_worker_every_time_fails_after_the_cap(fast: Env, queue: str, workers) -> None:  # type: ignore[no-untyped-def]
    workers(1)
    job_id = _submit(fast, queue, steps=100_000)
    def running_attempt(n: int) -> bool:
        job = _store(fast).get(job_id)
        return job.attempts == n and job.state == "running" and job.pid is not None

    for attempt in (1, 2, 3):
        wait_for(partial(running_attempt, attempt), 60, f"attempt {attempt}")
        pid = _store(fast).get(job_id).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the pool child running the job: a job that kills its worker
        fast.redis.hdel(f"rnnq:job:{job_id}", "pid")
    _wait_state(fast, job_id, ("failed",), timeout=60)
    record = _store(fast).get(job_id)
    assert record.error == "worker lost 3 times" and record.attempts == 3


def test_redelivered_message_never_trains_a_second_copy(fast: Env, queue: str, workers) -> None:  # type: ignore[no-untyped-def]
    fast.vars["RNNQ_VISIBILITY_TIMEOUT"] = "2"
    pool = workers(2)
    # A job that cannot finish before it is cancelled outlives the visibility timeout by
    # construction, so the broker hands its message out again while it runs.
    job_id = _submit(fast, queue, steps=10_000_000)

    def logs() -> str:
        return "".join(w.log.read_text() for w in pool)

    refused = f"job {job_id} is leased; not running this delivery"
    wait_for(lambda: refused in logs(), 120, "the message to be delivered again")
    assert _store(fast).get(job_id).state == "running"  # the duplicate arrived while the job ran, and was refused
    wait_for(lambda: _step(fast, job_id) > 0, 120, "the job to report a step")
    fast.cli("cancel", job_id)
    _wait_state(fast, job_id, ("cancelled",), timeout=120)
    record = _store(fast).get(job_id)
    assert record.attempts == 1 and record.worker_losses == 0
    steps = _steps_seen(fast, job_id)
    assert steps and steps == sorted(steps)  # one copy: the event log never goes back


def test_cancel_queued_job_never_starts(fast: Env, queue: str, workers) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(fast, queue, steps=50)
    res = fast.cli("cancel", job_id)
    assert res.exit_code == 0 and f"cancelled {job_id}" in res.stdout
    workers(1)
    wait_for(lambda: fast.queued(queue) == 0, 60, "the queue to drain")
    wait_for(lambda: "not running this delivery" in fast.tmp.joinpath("w0.log").read_text(), 30, "the delivery")
    record = _store(fast).get(job_id)
    assert record.state == "cancelled" and record.attempts == 0


def test_cancel_running_job_then_resume(fast: Env, queue: str, workers) -> None:  # type: ignore[no-untyped-def]
    worker = workers(1)[0]
    job_id = _submit(fast, queue, steps=LONG)
    wait_for(lambda: _step(fast, job_id) >= 60, 120, "training to pass step 60")
    pid = _store(fast).get(job_id).pid or 0
    assert _parent(pid) == worker.proc.pid  # the record names the worker's pool process, the one training
    os.kill(pid, signal.SIGSTOP)  # the job cannot run to its end while the CLI starts up
    try:
        assert "cancelling" in fast.cli("cancel", job_id).stdout
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait_state(fast, job_id, ("cancelled",), timeout=60)
    cancelled = _store(fast).get(job_id)
    assert cancelled.result is not None and 60 <= cancelled.result["steps"] < LONG
    assert cancelled.result["stopped_by"] == "cancelled"
    assert fast.cli("watch", job_id).exit_code == 1

    res = fast.cli("resume", job_id, "--wait")
    assert res.exit_code == 0, res.output
    record = _store(fast).get(job_id)
    assert record.state == "succeeded" and record.result is not None and record.result["steps"] == LONG
    assert record.resumed_from == cancelled.result["steps"]


def test_sigterm_hands_the_job_to_another_worker(fast: Env, queue: str, workers) -> None:  # type: ignore[no-untyped-def]
    first = workers(1)[0]
    job_id = _submit(fast, queue, steps=LONG)
    wait_for(lambda: _step(fast, job_id) >= 60, 120, "training to pass step 60")
    os.kill(first.proc.pid, signal.SIGTERM)  # warm shutdown of the worker's main process
    first.proc.wait(timeout=60)  # bounded: the job checkpoints and hands back within seconds
    assert _store(fast).get(job_id).state == "queued"
    workers(1)
    _wait_state(fast, job_id, ("succeeded", "failed"))
    record = _store(fast).get(job_id)
    assert record.state == "succeeded" and record.worker_losses == 0 and record.attempts == 2
    assert record.resumed_from is not None and record.resumed_from >= 60


def test_redis_restart_mid_run_loses_nothing(env: Env, tmp_path: Path) -> None:
    from tests.integration.conftest import free_port, start_redis

    port = free_port()
    data = tmp_path / "aof"
    data.mkdir()
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    proc, url = start_redis(data, *aof, port=port)
    env.vars["RNNQ_REDIS_URL"] = url
    w = start_worker(env.vars, tmp_path / "w.log", queues="train")
    try:
        store = JobStore(url)
        job_id = _submit(env, "train", steps=LONG)
        waiting = _submit(env, "train", steps=50)  # queued behind the first: must not be lost

        def step() -> int:
            try:
                return job_step(store, job_id)
            except Exception:  # noqa: BLE001 - Redis is down for part of this test
                return 0

        wait_for(lambda: step() >= 60, 120, "training to pass step 60")
        stop(proc)  # SIGTERM: Redis fsyncs the append-only file and exits
        proc, _ = start_redis(data, *aof, port=port)
        wait_for(lambda: job_final(store, job_id) and job_final(store, waiting), 420, "both jobs to finish")
        assert store.get(job_id).state == "succeeded" and store.get(job_id).result["steps"] == LONG  # type: ignore[index]
        assert store.get(waiting).state == "succeeded"
    finally:
        stop(w.proc)
        stop(proc)

