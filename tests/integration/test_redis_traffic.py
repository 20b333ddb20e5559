"""What a training worker node sends to Redis, counted with MONITOR on a Redis of its own.

A running job hears of a cancel or a drain in the replies to the writes it makes anyway
(a progress event every CHECK_SECONDS; workers.runner), and the worker runs without
Celery's heartbeat, so a node sends no polls at all. These tests pin that, a bound on
the node's requests per minute (issue 11: how far one Redis goes), and that the cancel
and the drain still arrive. Commands are counted, not timed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import Env, Worker, start_redis, start_worker, stop
from tests.support import job_step, make_corpus, wait_for, wait_state
from workers.jobstore import JobStore
from workers.runner import CHECK_SECONDS

pytestmark = pytest.mark.integration

WINDOW = 20.0  # seconds of a training node's traffic counted
REAP_SECONDS = 10.0  # the default: the node takes every period's reaper turn (it is alone)
# No evaluation and no checkpoint inside the window: what is left is the node's steady
# traffic, which does not depend on how fast this machine trains.
MODEL = ["--hidden", "24", "--embed", "8", "--seq-len", "16", "--batch-size", "4", "--eval-every", "1000000",
         "--checkpoint-every", "1000000", "--checkpoint-seconds", "3600", "--max-steps", "100000000"]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Env, Worker]]:
    """A Redis of its own (no other test's clients in MONITOR) and one worker node on it."""
    proc, url = start_redis(tmp_path)
    env = Env(vars={"RNNQ_REDIS_URL": url, "RNNQ_ARTIFACTS": str(tmp_path / "artifacts"),
                    "RNNQ_HOME": str(tmp_path / "home"), "RNNQ_REAP_SECONDS": str(REAP_SECONDS)},
              redis=redis.Redis.from_url(url, decode_responses=True), tmp=tmp_path)
    worker = start_worker(env.vars, tmp_path / "worker.log", queues="train")
    yield env, worker
    stop(worker.proc)
    stop(proc)


def submit(env: Env) -> str:
    path = env.tmp / "corpus.txt"
    path.write_text(make_corpus(20_000))
    res = env.cli("train", str(path), *MODEL, "--json")
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["job_id"])


def requests(url: str, seconds: float) -> Counter[str]:
    """Top-level requests to the server for `seconds`, by command; the commands Lua
    scripts call are left out (MONITOR tags them `lua`)."""
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=15)
    counts: Counter[str] = Counter()
    with client.monitor() as monitor:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            seen = monitor.next_command()
            if seen["client_type"] != "lua":
                counts[seen["command"].split(" ", 1)[0].lower()] += 1
    return counts


def test_a_training_node_sends_no_polls_and_under_100_requests_a_minute(node: tuple[Env, Worker]) -> None:
    env, _ = node
    store = JobStore(env.vars["RNNQ_REDIS_URL"])
    job_id = submit(env)
    wait_for(lambda: job_step(store, job_id) > 0, 120, "the job to report a step")
    events_before = store.redis.xlen(f"rnnq:events:{job_id}")
    counted = requests(env.vars["RNNQ_REDIS_URL"], WINDOW)
    events = store.redis.xlen(f"rnnq:events:{job_id}") - events_before

    assert not {"hget", "exists"} & set(counted), counted  # no cancel or drain polls
    assert "publish" not in counted, counted  # no Celery heartbeat (--without-heartbeat)
    # The latest progress report every CHECK_SECONDS (what `rnnq watch` shows)...
    talks = WINDOW / CHECK_SECONDS
    assert talks - 2 <= events <= talks + 1, events
    # ...and beside those events one reaper pass (_DUE) per period, and no lease
    # renewal: the events renew the lease.
    assert counted["evalsha"] - events <= WINDOW / REAP_SECONDS + 1, counted
    per_minute = sum(counted.values()) * 60 / WINDOW
    assert per_minute <= 100, counted

    assert env.cli("cancel", job_id).exit_code == 0  # seen in the next event's reply
    wait_state(store, job_id, ("cancelled",), timeout=60)
    assert store.get(job_id).result["stopped_by"] == "cancelled"  # type: ignore[index]


def test_sigterm_reaches_a_running_job_without_polls(node: tuple[Env, Worker]) -> None:
    """The drain key is read by the job's own fenced writes: SIGTERM still hands back."""
    env, worker = node
    store = JobStore(env.vars["RNNQ_REDIS_URL"])
    job_id = submit(env)
    wait_for(lambda: job_step(store, job_id) > 0, 120, "the job to report a step")
    os.kill(worker.proc.pid, signal.SIGTERM)  # warm shutdown: the node drains
    worker.proc.wait(timeout=60)
    record = store.get(job_id)
    assert record.state == "queued" and record.worker_losses == 0
    assert "last" in record.artifacts  # checkpointed before it was handed back
