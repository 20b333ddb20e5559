"""What a training worker node sends to Redis, counted with MONITOR on a Redis of its own.

A running job hears of a cancel or a drain in the replies to the writes it makes anyway
(its progress, written once per CHECK_SECONDS, evaluations included; workers.runner),
and the worker runs without Celery's heartbeat, so a node sends no polls at all. These
tests pin that, a bound on the node's requests per minute (issue 11: how far one Redis
goes), and that the cancel and the drain still arrive. Commands are counted, not timed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import Env, Worker, start_redis, start_worker, stop
from tests.support import job_step, make_corpus, wait_for, wait_state
from workers import jobstore
from workers.jobstore import JobStore
from workers.runner import CHECK_SECONDS

pytestmark = pytest.mark.integration

WINDOW = 12.0  # seconds of a training node's traffic counted (six talks)
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


def submit(env: Env, *extra: str) -> str:
    path = env.tmp / "corpus.txt"
    path.write_text(make_corpus(20_000))
    res = env.cli("train", str(path), *MODEL, *extra, "--json")
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["job_id"])


# A script's EVALSHA names it by the SHA-1 of its text: count each script by name.
SCRIPTS = {hashlib.sha1(text.encode()).hexdigest(): name for name, text in
           (("_event", jobstore._EVENT), ("_renew", jobstore._RENEW),
            ("_due", jobstore._DUE), ("_reap", jobstore._REAP))}


def requests(url: str, seconds: float) -> Counter[str]:
    """Top-level requests to the server for `seconds`, by command, an EVALSHA by its
    script's name; the commands Lua scripts call are left out (MONITOR tags them `lua`)."""
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=15)
    counts: Counter[str] = Counter()
    with client.monitor() as monitor:
        end = time.monotonic() + seconds
        while True:
            seen = monitor.next_command()
            if time.monotonic() >= end:
                break  # sent after the window
            if seen["client_type"] != "lua":
                command, *args = seen["command"].split(" ")
                counts[SCRIPTS.get(args[0], "other script") if command.lower() == "evalsha" else command.lower()] += 1
    return counts


def events_during(store: JobStore, job_id: str, seconds: float) -> tuple[Counter[str], list[dict[str, Any]]]:
    """The requests counted for `seconds`, and the job's events written meanwhile."""
    last = store.redis.xrevrange(f"rnnq:events:{job_id}", count=1)
    counted = requests(store.url, seconds)
    after = last[0][0] if last else "0-0"
    return counted, [event for event_id, event in store.events(job_id, after) if event_id != after]


def test_a_training_node_sends_no_polls_and_under_100_requests_a_minute(node: tuple[Env, Worker]) -> None:
    env, _ = node
    store = JobStore(env.vars["RNNQ_REDIS_URL"])
    job_id = submit(env)
    wait_for(lambda: job_step(store, job_id) > 0, 120, "the job to report a step")
    counted, events = events_during(store, job_id, WINDOW)

    assert not {"hget", "exists"} & set(counted), counted  # no cancel or drain polls
    assert "publish" not in counted, counted  # no Celery heartbeat (--without-heartbeat)
    # The latest progress report every CHECK_SECONDS (what `rnnq watch` shows), which
    # renews the lease: the lease thread sends nothing. One reaper pass per period.
    talks = WINDOW / CHECK_SECONDS
    assert talks - 2 <= counted["_event"] <= talks + 1 and len(events) >= talks - 2, (counted, len(events))
    assert counted["_renew"] == 0 and counted["_due"] <= WINDOW / REAP_SECONDS + 1, counted
    assert sum(counted.values()) * 60 / WINDOW <= 100, counted

    assert env.cli("cancel", job_id).exit_code == 0  # seen in the next event's reply
    wait_state(store, job_id, ("cancelled",), timeout=60)
    assert store.get(job_id).result["stopped_by"] == "cancelled"  # type: ignore[index]


def test_evaluations_and_checkpoints_ride_on_the_next_progress_write(node: tuple[Env, Worker]) -> None:
    """A job that evaluates, and so checkpoints, several times per CHECK_SECONDS still
    writes one script per CHECK_SECONDS: every evaluation's report is in its stream, and
    its checkpoint pointer has moved to the latest evaluation, in the same writes."""
    env, _ = node
    store = JobStore(env.vars["RNNQ_REDIS_URL"])
    job_id = submit(env, "--eval-every", "10", "--patience", "1000000")
    wait_for(lambda: job_step(store, job_id) > 0, 120, "the job to report a step")
    counted, events = events_during(store, job_id, WINDOW / 2)
    evaluated = sorted({int(e["step"]) for e in events if "val_loss" in e})
    assert len(evaluated) > WINDOW / 2 / CHECK_SECONDS + 2, (len(evaluated), counted)  # more than one per talk
    assert evaluated == list(range(evaluated[0], evaluated[-1] + 10, 10))  # none left out
    # One script per talk, its checkpoints (one per evaluation) included: a publication
    # of its own would be one more _event.
    assert counted["_event"] <= WINDOW / 2 / CHECK_SECONDS + 1, counted
    published = int(store.redis.hget(f"rnnq:job:{job_id}", "ckpt_last_step") or -1)
    assert published >= evaluated[-1] and published % 10 == 0, (published, evaluated[-1])
    assert env.cli("cancel", job_id).exit_code == 0


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
