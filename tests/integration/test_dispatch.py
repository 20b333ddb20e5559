"""Sending a job's message: a submit talks to Redis over one connection, and the message
it pushes is the one Celery and kombu would have published (workers.dispatch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, STARTUP, start_redis, stop
from tests.support import phrase_corpus, wait_for
from workers import dispatch
from workers.celeryconf import make_app
from workers.jobstore import JobStore
from workers.settings import resolve

pytestmark = pytest.mark.integration

MODEL = ["--hidden", "16", "--embed", "8", "--seq-len", "16", "--max-steps", "1"]


def _connections(store: JobStore) -> int:
    """Connections Redis has accepted so far (asked over the store's one open connection)."""
    return int(store.call(lambda: store.redis.info("stats"))["total_connections_received"])


def _rnnq(url: str, tmp: Path, *args: str) -> subprocess.Popen[str]:
    """rnnq in a fresh interpreter: one CLI invocation, as a user runs it."""
    variables = {**os.environ, "RNNQ_REDIS_URL": url, "RNNQ_HOME": str(tmp / "home"),
                 "RNNQ_ARTIFACTS": str(tmp / "artifacts")}
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=variables, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    """A Redis of this test's own: no other process connects to it while it counts."""
    proc, url = start_redis(tmp_path)
    yield url
    stop(proc)


def test_a_submit_opens_one_redis_connection(own_redis: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(phrase_corpus(5_000))
    store = JobStore(own_redis)
    before = _connections(store)
    cli = _rnnq(own_redis, tmp_path, "train", str(corpus), *MODEL, "--json")
    out, err = cli.communicate(timeout=STARTUP)
    assert cli.returncode == 0, err
    assert _connections(store) - before == 1  # the job store's: record and message alike
    job_id = json.loads(out)["job_id"]
    (message,) = store.redis.lrange("train", 0, -1)
    assert json.loads(message)["headers"]["id"] == job_id


def test_waiting_on_the_job_reuses_the_submit_connection(own_redis: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(phrase_corpus(5_000))
    store = JobStore(own_redis)
    before = _connections(store)
    cli = _rnnq(own_redis, tmp_path, "train", str(corpus), *MODEL, "--wait")
    wait_for(lambda: store.redis.zcard("rnnq:jobs") == 1 or cli.poll() is not None, STARTUP, "the submit")
    (job_id,) = store.redis.zrange("rnnq:jobs", 0, -1)
    assert store.cancel(job_id) == "cancelled"  # no worker here: --wait follows it to its end
    out, err = cli.communicate(timeout=STARTUP)
    assert cli.returncode != 0 and "cancelled" in out + err
    assert _connections(store) - before == 1


def test_the_message_is_the_one_kombu_publishes(own_redis: str) -> None:
    app = make_app(resolve(redis_url=own_redis))
    store = JobStore(own_redis)
    app.send_task("rnnq.train", args=["0123456789ab"], queue="by-kombu", task_id="0123456789ab")
    dispatch.send_job(store, "0123456789ab", "train", "by-dispatch", app)
    (kombu,) = [json.loads(m) for m in store.redis.lrange("by-kombu", 0, -1)]
    (ours,) = [json.loads(m) for m in store.redis.lrange("by-dispatch", 0, -1)]
    for message in (kombu, ours):
        assert message["properties"].pop("delivery_tag")  # a fresh uuid per message
        message["properties"]["delivery_info"].pop("routing_key")  # the queue's name
    assert ours == kombu
