"""Each test starts on a flushed Redis database: what one test leaves, the next never sees.

The two tests run in file order; the first leaves a job record, a queued message and
a lease behind, and the second must find an empty database.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Env
from workers.jobstore import JobStore

pytestmark = pytest.mark.integration


def test_a_test_may_leave_jobs_and_messages_behind(env: Env) -> None:
    store = JobStore(env.vars["RNNQ_REDIS_URL"])
    job = store.create("train", {}, "train", name="left-behind")
    store.start(job.id, "w", "token", 600, 3)
    env.redis.lpush("train", json.dumps({"headers": {"id": job.id}}))
    assert env.redis.dbsize() > 0


def test_the_next_test_starts_on_an_empty_database(env: Env) -> None:
    assert env.redis.dbsize() == 0
    assert env.job_count() == 0 and env.queued("train") == 0
