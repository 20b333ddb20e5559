"""Each Lua script of the job store, its success path and each refusal, on a real Redis.

tests/integration/test_fencing.py checks the rules across scripts (a copy that lost
its job writes nothing, checkpoints never go back, hand-back, lease re-take); this
file checks what every script writes, key by key, and what it refuses. Each test gets
a flushed database from the `env` fixture.
"""

from __future__ import annotations

import json
from typing import cast

import pytest

from tests.integration.conftest import Env
from workers.jobstore import Attempt, Fenced, JobStore, Standing

pytestmark = pytest.mark.integration

LEASE = 30.0


@pytest.fixture
def store(env: Env) -> JobStore:
    return JobStore(env.vars["RNNQ_REDIS_URL"])


def record(store: JobStore, job_id: str) -> dict[str, str]:
    return cast(dict[str, str], store.redis.hgetall(f"rnnq:job:{job_id}"))


def take(store: JobStore, job_id: str, who: str = "a", max_losses: int = 10) -> Attempt:
    got = store.start(job_id, who, f"{who}-token", LEASE, max_losses)
    assert isinstance(got, Attempt), got
    return got


def running(store: JobStore) -> set[str]:
    return cast(set[str], store.redis.smembers("rnnq:running"))


def queued(store: JobStore) -> list[str]:
    return cast(list[str], store.redis.zrange("rnnq:queued", 0, -1))


def deadlines(store: JobStore) -> dict[str, float]:
    return dict(store.redis.zrange("rnnq:deadlines", 0, -1, withscores=True))


def lease_expiry(store: JobStore, job_id: str) -> int:
    """When the job's lease key lapses (ms since the epoch, Redis's clock)."""
    return int(store.redis.pexpiretime(f"rnnq:lease:{job_id}"))


def lapse(store: JobStore, job_id: str) -> None:
    """What a lapsed TTL does: the lease key is gone, and its deadline has passed."""
    store.redis.delete(f"rnnq:lease:{job_id}")
    store.redis.zadd("rnnq:deadlines", {job_id: 0}, xx=True)


# --- create: the record and every index, in one step -------------------------------

def test_create_writes_the_record_and_every_index(store: JobStore) -> None:
    job = store.create("train", {"hidden": 8}, "q1", name="n1")
    assert record(store, job.id)["state"] == "queued" and json.loads(record(store, job.id)["spec"]) == {"hidden": 8}
    assert store.redis.zscore("rnnq:jobs", job.id) == pytest.approx(job.created_at)
    assert store.redis.zscore("rnnq:queued", job.id) == pytest.approx(job.created_at)
    assert store.redis.zrange("rnnq:names:n1", 0, -1) == [job.id]
    assert store.queues() == ["q1"]
    assert store.queued_since(job.created_at + 1) == [job.id] and store.queued_since(job.created_at - 1) == []


# --- _START ---------------------------------------------------------------------------

def test_start_takes_a_queued_job(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    h = record(store, job.id)
    assert a.number == 1 and h["attempts"] == "1"
    assert h["state"] == "running" and h["worker"] == "a" and h["lease_token"] == "a-token"
    assert store.redis.get(f"rnnq:lease:{job.id}") == "a-token"
    assert 0 < store.redis.pttl(f"rnnq:lease:{job.id}") <= LEASE * 1000
    assert running(store) == {job.id} and queued(store) == []
    assert h["started_at"] == h["last_started_at"]
    assert deadlines(store) == {job.id: lease_expiry(store, job.id)}  # what the reaper reads


def test_start_refuses_a_deleted_job(store: JobStore) -> None:
    assert store.start("no-such-job", "a", "a-token", LEASE, 10) == ""
    assert not store.redis.exists("rnnq:job:no-such-job", "rnnq:lease:no-such-job")  # nothing re-created
    assert running(store) == set()


@pytest.mark.parametrize("final", ["succeeded", "failed", "cancelled"])
def test_start_refuses_a_finished_job_and_says_its_state(store: JobStore, final: str) -> None:
    job = store.create("train", {}, "train")
    store.redis.hset(f"rnnq:job:{job.id}", "state", final)
    before = record(store, job.id)
    assert store.start(job.id, "b", "b-token", LEASE, 10) == final
    assert record(store, job.id) == before and not store.redis.exists(f"rnnq:lease:{job.id}")


def test_start_refuses_a_job_another_attempt_holds(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id, "a")
    before = record(store, job.id)
    assert store.start(job.id, "b", "b-token", LEASE, 10) == "leased"
    assert record(store, job.id) == before and store.redis.get(f"rnnq:lease:{job.id}") == "a-token"


def test_start_after_a_lost_worker_counts_the_loss_and_keeps_the_first_start(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id, "a")
    first_start = record(store, job.id)["started_at"]
    lapse(store, job.id)  # the worker died: its lease ran out, the job still says running
    b = take(store, job.id, "b")
    h = record(store, job.id)
    assert b.number == 2 and h["worker_losses"] == "1" and h["worker"] == "b" and h["lease_token"] == "b-token"
    assert h["started_at"] == first_start  # HSETNX: the first start is kept, the latest is separate


def test_start_fails_the_job_at_the_loss_cap(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id, "a", max_losses=2)
    lapse(store, job.id)
    take(store, job.id, "b", max_losses=2)
    lapse(store, job.id)
    assert store.start(job.id, "c", "c-token", LEASE, 2) == "failed"
    h = record(store, job.id)
    assert h["state"] == "failed" and h["error"] == "worker lost 2 times" and "finished_at" in h
    assert h["attempts"] == "2" and not store.redis.exists(f"rnnq:lease:{job.id}") and running(store) == set()
    assert deadlines(store) == {}


# --- _FENCE and the fenced writes -------------------------------------------------------

def test_renew_extends_the_lease_and_its_deadline(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    store.redis.pexpire(f"rnnq:lease:{job.id}", 1000)
    store.redis.zadd("rnnq:deadlines", {job.id: lease_expiry(store, job.id)})
    assert store.renew_lease(a) is Standing.OWNED
    assert store.redis.pttl(f"rnnq:lease:{job.id}") > 1000
    assert deadlines(store) == {job.id: lease_expiry(store, job.id)}
    store.add_event(a, {"step": 1})  # every fenced write renews
    assert deadlines(store) == {job.id: lease_expiry(store, job.id)}


def test_fenced_writes_answer_cancel_then_drain(store: JobStore) -> None:
    """What a running job learns from the writes it makes anyway, instead of polling:
    a cancel request comes first, then its own node's drain; another node's drain is
    not its business."""
    job = store.create("train", {}, "train")
    a = take(store, job.id, "node-a@host")
    assert a.node == "node-a@host"
    assert store.add_event(a, {"step": 1}) is Standing.OWNED
    store.set_draining("node-b@host", True)
    assert store.renew_lease(a) is Standing.OWNED
    assert store.cancel(job.id) == "requested"
    store.set_draining("node-a@host", True)
    assert store.renew_lease(a) is Standing.CANCEL and store.add_event(a, {"step": 2}) is Standing.CANCEL
    store.redis.hset(f"rnnq:job:{job.id}", "cancel_requested", "")
    assert store.renew_lease(a) is Standing.DRAIN and store.add_event(a, {"step": 3}) is Standing.DRAIN
    store.set_draining("node-a@host", False)
    assert store.renew_lease(a) is Standing.OWNED
    assert [e["step"] for _, e in store.events(job.id)] == [1, 2, 3]
    forged = Attempt(job.id, "not-the-token", 1, LEASE, "node-a@host")
    assert store.renew_lease(forged) is Standing.LOST and not store.renew_lease(forged)


def test_a_wrong_token_is_refused_by_every_fenced_write(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id, "a")
    forged = Attempt(job.id, "not-the-token", 1, LEASE)
    before = record(store, job.id)
    assert not store.renew_lease(forged)
    for write in (lambda: store.update_owned(forged, pid=1), lambda: store.add_event(forged, {"step": 1}),
                  lambda: store.publish_checkpoint(forged, "last", "k", 1), lambda: store.finish(forged, "succeeded"),
                  lambda: store.hand_back(forged)):
        with pytest.raises(Fenced):
            write()
    assert record(store, job.id) == before and store.redis.get(f"rnnq:lease:{job.id}") == "a-token"
    assert not store.redis.exists(f"rnnq:events:{job.id}")


def test_a_lease_held_under_another_token_is_refused(store: JobStore) -> None:
    """The record names this attempt but the lease key holds another token: refuse, and
    leave that lease alone (only a lapsed lease may be re-taken)."""
    job = store.create("train", {}, "train")
    a = take(store, job.id, "a")
    store.redis.set(f"rnnq:lease:{job.id}", "other", px=30_000)
    assert not store.renew_lease(a)
    with pytest.raises(Fenced):
        store.update_owned(a, pid=1)
    assert store.redis.get(f"rnnq:lease:{job.id}") == "other" and "pid" not in record(store, job.id)


@pytest.mark.parametrize("state", ["queued", "succeeded", "cancelled", "failed"])
def test_fenced_writes_need_the_job_running(store: JobStore, state: str) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id, "a")
    store.redis.hset(f"rnnq:job:{job.id}", "state", state)
    assert not store.renew_lease(a)
    with pytest.raises(Fenced):
        store.add_event(a, {"step": 1})
    assert not store.redis.exists(f"rnnq:events:{job.id}") and record(store, job.id)["state"] == state


def test_a_lapsed_lease_is_retaken_by_any_fenced_write(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id, "a")
    lapse(store, job.id)
    store.update_owned(a, pid=7)
    assert record(store, job.id)["pid"] == "7" and store.redis.get(f"rnnq:lease:{job.id}") == "a-token"


def test_update_encodes_fields(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    store.update_owned(a, resumed_from=40, result={"steps": 3}, vocab=None)
    h = record(store, job.id)
    assert h["resumed_from"] == "40" and json.loads(h["result"]) == {"steps": 3} and h["vocab"] == ""


def test_events_append_and_the_last_evaluation_is_kept(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    store.add_event(a, {"step": 10, "loss": 2.0, "val_loss": 1.5})
    store.add_event(a, {"step": 20, "loss": 1.8})  # no evaluation at this step
    assert [e["step"] for _, e in store.events(job.id)] == [10, 20]
    assert store.get(job.id).progress == {"step": 20, "loss": 1.8}
    assert float(record(store, job.id)["val_loss"]) == 1.5
    last_id = store.events(job.id)[-1][0]
    assert store.events(job.id, after=last_id) == []


def test_events_written_together_keep_their_order_and_the_latest_evaluation(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    batch = [{"step": 10, "val_loss": 1.5}, {"step": 20, "val_loss": 1.25}, {"step": 25, "loss": 1.1}]
    assert store.add_events(a, batch) is Standing.OWNED
    assert [e for _, e in store.events(job.id)] == batch
    assert store.get(job.id).progress == {"step": 25, "loss": 1.1}
    assert float(record(store, job.id)["val_loss"]) == 1.25
    # one stream entry a talk, however many events it carries: a reader resumes after it
    assert store.redis.xlen(f"rnnq:events:{job.id}") == 1
    assert store.events(job.id, after=store.events(job.id)[-1][0]) == []


def test_events_written_one_an_entry_by_an_earlier_version_are_still_read(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    store.redis.xadd(f"rnnq:events:{job.id}", {"m": json.dumps({"step": 5, "loss": 2.5})})
    store.add_events(a, [{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1.8}])
    assert [e["step"] for _, e in store.events(job.id)] == [5, 10, 20]


def test_publish_moves_forward_and_may_repeat_a_step(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    assert store.publish_checkpoint(a, "best", "k/b100", 100) is None
    assert store.publish_checkpoint(a, "best", "k/b100-again", 100) == "k/b100"  # the same step: allowed
    with pytest.raises(Fenced):
        store.publish_checkpoint(a, "best", "k/b99", 99)
    h = record(store, job.id)
    assert h["ckpt_best"] == "k/b100-again" and h["ckpt_best_step"] == "100"


def test_finish_ends_the_attempt_in_one_step(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    store.finish(a, "succeeded", result={"steps": 5}, artifacts={"log": "k/log"})
    h = record(store, job.id)
    assert h["state"] == "succeeded" and "finished_at" in h and json.loads(h["result"]) == {"steps": 5}
    assert not store.redis.exists(f"rnnq:lease:{job.id}") and running(store) == set() and queued(store) == []
    assert deadlines(store) == {}
    assert store.get(job.id).artifacts == {"log": "k/log"}
    with pytest.raises(Fenced):  # the attempt ended: a second end is refused
        store.finish(a, "failed", error="late")
    assert store.get(job.id).state == "succeeded"


def test_hand_back_queues_the_job_without_finishing_it(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    store.hand_back(a)
    h = record(store, job.id)
    assert h["state"] == "queued" and "finished_at" not in h
    assert queued(store) == [job.id] and running(store) == set() and deadlines(store) == {}


# --- _REAP -------------------------------------------------------------------------------

def test_reap_leaves_a_live_lease_alone(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id)
    assert store.reap(max_losses=3) == []
    assert record(store, job.id)["state"] == "running" and running(store) == {job.id}


def test_reap_requeues_a_lapsed_job_and_counts_the_loss(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id)
    lapse(store, job.id)
    assert [j.id for j in store.reap(max_losses=3)] == [job.id]
    h = record(store, job.id)
    assert h["state"] == "queued" and h["worker_losses"] == "1"
    assert queued(store) == [job.id] and running(store) == set() and deadlines(store) == {}


def test_reap_fails_a_lapsed_job_at_the_cap(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id)
    lapse(store, job.id)
    assert store.reap(max_losses=1) == []  # failed, not requeued: nothing to send
    h = record(store, job.id)
    assert h["state"] == "failed" and h["error"] == "worker lost 1 times" and queued(store) == []


def test_reap_drops_a_stale_running_entry(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    store.redis.sadd("rnnq:running", job.id, "deleted-job")
    assert store.reap(max_losses=3) == []
    assert running(store) == set() and record(store, job.id)["state"] == "queued"


# --- _CANCEL, _RESUME, _UNSENT -------------------------------------------------------------

def test_cancel_a_queued_job_at_once(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    assert store.cancel(job.id) == "cancelled"
    assert record(store, job.id)["state"] == "cancelled" and "finished_at" in record(store, job.id)
    assert queued(store) == []
    assert store.start(job.id, "a", "a-token", LEASE, 10) == "cancelled"  # its message, if it comes, is refused


def test_cancel_a_running_job_asks_it_to_stop(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id)
    assert not store.cancel_requested(job.id)
    assert store.cancel(job.id) == "requested"
    assert store.cancel_requested(job.id) and record(store, job.id)["state"] == "running"


def test_cancel_leaves_finished_and_missing_jobs(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    store.finish(take(store, job.id), "succeeded")
    assert store.cancel(job.id) == "succeeded" and record(store, job.id)["state"] == "succeeded"
    assert store.cancel("no-such-job") == "" and not store.redis.exists("rnnq:job:no-such-job")


@pytest.mark.parametrize("final", ["cancelled", "failed"])
def test_reopen_gives_a_clean_slate(store: JobStore, final: str) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    store.cancel(job.id)
    store.finish(a, final, error="boom", traceback="tb")
    store.redis.hset(f"rnnq:job:{job.id}", "worker_losses", "2")
    store.redis.set(f"rnnq:lease:{job.id}", "stale", px=30_000)
    assert store.reopen(job.id) == "queued"
    h = record(store, job.id)
    assert h["state"] == "queued" and h["worker_losses"] == "0" and h["cancel_requested"] == ""
    assert not {"error", "traceback", "finished_at"} & set(h)
    assert not store.redis.exists(f"rnnq:lease:{job.id}") and queued(store) == [job.id]
    assert take(store, job.id, "b").number == 2


def test_reopen_refuses_running_succeeded_and_missing_jobs(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id)
    assert store.reopen(job.id) == "running" and record(store, job.id)["state"] == "running"
    store.finish(a, "succeeded")
    assert store.reopen(job.id) == "succeeded" and queued(store) == []
    assert store.reopen("no-such-job") == ""


def test_fail_unsent_fails_only_a_job_still_queued(store: JobStore) -> None:
    lost = store.create("train", {}, "train")
    store.fail_unsent(lost.id, "broker unreachable")
    h = record(store, lost.id)
    assert h["state"] == "failed" and h["error"] == "broker unreachable" and "finished_at" in h
    taken = store.create("train", {}, "train")
    take(store, taken.id)  # a worker took it before the sender gave up
    store.fail_unsent(taken.id, "broker unreachable")
    assert record(store, taken.id)["state"] == "running" and "error" not in record(store, taken.id)
    assert queued(store) == []


# --- the name index ---------------------------------------------------------------------

def test_a_name_resolves_to_its_newest_job_and_ids_win(store: JobStore) -> None:
    old = store.create("train", {}, "train", name="n")
    store.redis.zadd("rnnq:names:n", {old.id: old.created_at - 10})  # submitted earlier
    new = store.create("train", {}, "train", name="n")
    assert store.resolve("n").id == new.id
    assert store.resolve(old.id).id == old.id
    store.delete(new.id)
    assert store.resolve("n").id == old.id
    store.delete(old.id)
    assert not store.redis.exists("rnnq:names:n", f"rnnq:job:{old.id}", "rnnq:jobs")
