"""The runner on a real Redis, in this process: what one delivery of a job's message
does to the job's record, with no Celery in between.

Jobs are submitted through the CLI to a queue no worker reads; the test then plays the
worker and calls `workers.runner.run` for the job, as the Celery task would.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Env
from tests.support import corpus_file
from workers import runner
from workers.jobstore import JobStore

pytestmark = pytest.mark.integration

TINY = ["--hidden", "16", "--embed", "8", "--seq-len", "16", "--batch-size", "4", "--eval-every", "10",
        "--checkpoint-every", "10", "--queue", "nobody-reads-this", "--json"]


@pytest.fixture
def store(env: Env, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    for name, value in env.vars.items():  # runner.run reads its settings from the environment
        monkeypatch.setenv(name, value)
    return JobStore(env.vars["RNNQ_REDIS_URL"])


def submit(env: Env, steps: int = 20) -> str:
    res = env.cli("train", str(corpus_file(env.tmp, 4000)), *TINY, "--max-steps", str(steps))
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["job_id"])


def test_a_delivery_trains_the_job_and_records_everything(env: Env, store: JobStore) -> None:
    job_id = submit(env)
    runner.run("train", job_id, "w1@host")
    job = store.get(job_id)
    assert job.state == "succeeded" and job.attempts == 1 and job.worker == "w1@host"
    assert job.result is not None and job.result["steps"] == 20 and job.result["stopped_by"] == "max_steps"
    assert {"checkpoint", "last"} <= set(job.artifacts)
    steps = [int(e["step"]) for _, e in store.events(job_id)]
    assert steps and steps == sorted(steps) and steps[-1] == 20
    assert not store.redis.exists(f"rnnq:lease:{job_id}") and store.running_ids() == []
    assert store.queued_since(float("inf")) == []


def test_a_second_delivery_of_a_finished_job_changes_nothing(env: Env, store: JobStore) -> None:
    job_id = submit(env)
    runner.run("train", job_id, "w1@host")
    before = store.redis.hgetall(f"rnnq:job:{job_id}")
    events = store.redis.xlen(f"rnnq:events:{job_id}")
    runner.run("train", job_id, "w2@host")  # a redelivered message
    assert store.redis.hgetall(f"rnnq:job:{job_id}") == before
    assert store.redis.xlen(f"rnnq:events:{job_id}") == events


def test_a_delivery_of_a_leased_or_deleted_job_writes_nothing(env: Env, store: JobStore) -> None:
    job_id = submit(env)
    assert not isinstance(store.start(job_id, "other@host", "other-token", 30, 3), str)
    before = store.redis.hgetall(f"rnnq:job:{job_id}")
    runner.run("train", job_id, "w1@host")
    assert store.redis.hgetall(f"rnnq:job:{job_id}") == before  # still the other attempt's job
    assert not store.redis.exists(f"rnnq:events:{job_id}")

    gone = submit(env)
    store.cancel(gone)
    store.delete(gone)
    runner.run("train", gone, "w1@host")
    assert not store.redis.exists(f"rnnq:job:{gone}", f"rnnq:events:{gone}", f"rnnq:lease:{gone}")


def test_a_cancel_requested_before_the_first_step_check_stops_the_job(env: Env, store: JobStore) -> None:
    job_id = submit(env, steps=100_000)
    store.redis.hset(f"rnnq:job:{job_id}", "cancel_requested", "1")  # as `rnnq cancel` on a running job
    runner.run("train", job_id, "w1@host")
    job = store.get(job_id)
    assert job.state == "cancelled" and job.result is not None and job.result["stopped_by"] == "cancelled"
    assert job.result["steps"] < 100_000 and not store.redis.exists(f"rnnq:lease:{job_id}")


def test_a_job_that_raises_is_failed_with_its_traceback(env: Env, store: JobStore) -> None:
    job_id = submit(env)
    spec = store.get(job_id).spec
    spec["hidden"] = -1  # a record no submit would write: the job function raises
    store.redis.hset(f"rnnq:job:{job_id}", "spec", json.dumps(spec))
    runner.run("train", job_id, "w1@host")
    job = store.get(job_id)
    assert job.state == "failed" and job.error and "hidden" in job.error
    assert job.traceback and "Traceback" in job.traceback
    assert not store.redis.exists(f"rnnq:lease:{job_id}") and store.running_ids() == []
