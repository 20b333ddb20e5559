"""The job store's fencing, hand-back, reconciler and outage rules, against a real Redis.

These drive JobStore and the reaper directly (no worker processes), so each rule is
checked in isolation; tests/cluster checks them together under real faults.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Env, start_redis, stop, wait_for
from workers.jobstore import Attempt, Fenced, Job, JobStore
from workers.reconcile import Reaper, messages_in_broker

pytestmark = pytest.mark.integration


@pytest.fixture
def store(env: Env) -> JobStore:
    return JobStore(env.vars["RNNQ_REDIS_URL"])


def take(store: JobStore, job_id: str, who: str, lease: float = 30.0) -> Attempt:
    got = store.start(job_id, who, f"{who}-token", lease, max_losses=10)
    assert isinstance(got, Attempt), got
    return got


def lose_lease(store: JobStore, job_id: str) -> None:
    """What a lapsed TTL does: the lease key is gone, and its deadline has passed."""
    store.redis.delete(f"rnnq:lease:{job_id}")
    store.redis.zadd("rnnq:deadlines", {job_id: 0}, xx=True)


def test_a_copy_that_lost_its_job_writes_nothing(store: JobStore) -> None:
    job = store.create("train", {"x": 1}, "train")
    stale = take(store, job.id, "a")
    store.publish_checkpoint(stale, "last", "jobs/x/ckpt/last-a1-s100", 100)
    lose_lease(store, job.id)
    assert [j.id for j in store.reap(max_losses=10)] == [job.id]
    live = take(store, job.id, "b")
    assert live.number == stale.number + 1
    store.add_event(live, {"step": 120, "attempt": live.number})
    before = store.redis.hgetall(f"rnnq:job:{job.id}")
    events = store.redis.xlen(f"rnnq:events:{job.id}")
    for write in (lambda: store.update_owned(stale, resumed_from=5),
                  lambda: store.add_event(stale, {"step": 111, "attempt": stale.number}),
                  lambda: store.publish_checkpoint(stale, "last", "jobs/x/ckpt/last-a1-s111", 111),
                  lambda: store.finish(stale, "succeeded", result={"steps": 111}),
                  lambda: store.hand_back(stale)):
        with pytest.raises(Fenced):
            write()
    assert not store.renew_lease(stale)
    assert store.redis.hgetall(f"rnnq:job:{job.id}") == before
    assert store.redis.xlen(f"rnnq:events:{job.id}") == events
    assert store.redis.get(f"rnnq:lease:{job.id}") == live.token
    store.finish(live, "succeeded", result={"steps": 200})
    assert store.get(job.id).state == "succeeded" and store.get(job.id).result == {"steps": 200}


def test_published_checkpoints_never_go_back(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    a = take(store, job.id, "a")
    assert store.publish_checkpoint(a, "last", "jobs/k/ckpt/s100", 100) is None
    assert store.publish_checkpoint(a, "last", "jobs/k/ckpt/s200", 200) == "jobs/k/ckpt/s100"
    with pytest.raises(Fenced):
        store.publish_checkpoint(a, "last", "jobs/k/ckpt/s150", 150)
    store.publish_checkpoint(a, "best", "jobs/k/ckpt/b150", 150)  # each name on its own
    assert store.get(job.id).artifacts == {"last": "jobs/k/ckpt/s200", "checkpoint": "jobs/k/ckpt/b150"}


def test_no_write_recreates_a_deleted_job(store: JobStore) -> None:
    job = store.create("train", {}, "train", name="gone")
    a = take(store, job.id, "a")
    store.redis.hset(f"rnnq:job:{job.id}", "state", "cancelled")  # finished, so delete is allowed
    store.delete(job.id)
    for write in (lambda: store.update_owned(a, pid=1), lambda: store.add_event(a, {"step": 1}),
                  lambda: store.publish_checkpoint(a, "last", "jobs/k/ckpt/s1", 1),
                  lambda: store.finish(a, "succeeded")):
        with pytest.raises(Fenced):
            write()
    assert not store.redis.exists(f"rnnq:job:{job.id}", f"rnnq:events:{job.id}")


def test_hand_back_releases_the_lease_in_the_same_step(store: JobStore) -> None:
    """An idle worker that gets the message the instant it is sent can take the job."""
    job = store.create("train", {}, "train")
    a = take(store, job.id, "a")
    store.hand_back(a)
    assert not store.redis.exists(f"rnnq:lease:{job.id}")
    assert job.id in store.redis.zrange("rnnq:queued", 0, -1)
    b = store.start(job.id, "b", "b-token", 30, 10)
    assert isinstance(b, Attempt) and b.number == 2
    assert store.get(job.id).worker_losses == 0


def test_a_queued_job_is_not_refused_by_a_stale_lease(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    store.redis.set(f"rnnq:lease:{job.id}", "someone-stale", px=30_000)
    assert isinstance(store.start(job.id, "b", "b-token", 30, 10), Attempt)


def test_renewal_retakes_a_lapsed_lease_only_if_nobody_took_the_job(store: JobStore) -> None:
    """After a Redis restart longer than the lease, the lease key is gone but the worker
    still owns the job; once another attempt started, it does not."""
    job = store.create("train", {}, "train")
    a = take(store, job.id, "a")
    lose_lease(store, job.id)
    assert store.renew_lease(a)
    assert store.redis.get(f"rnnq:lease:{job.id}") == a.token
    lose_lease(store, job.id)
    store.reap(max_losses=10)
    take(store, job.id, "b")
    assert not store.renew_lease(a)


def test_reconciler_resends_only_jobs_with_no_message(env: Env, store: JobStore) -> None:
    lonely = store.create("train", {}, "q-rec")
    waiting = store.create("train", {}, "q-rec")
    delivered = store.create("train", {}, "q-rec")
    started = store.create("train", {}, "q-rec")
    take(store, started.id, "a")
    message = {"headers": {"id": waiting.id, "task": "rnnq.train"}, "properties": {}, "body": ""}
    env.redis.lpush("q-rec\x06\x166", json.dumps(message))  # a priority sub-list counts too
    message["headers"]["id"] = delivered.id
    env.redis.hset("unacked", "tag-1", json.dumps([message, "q-rec", "q-rec"]))
    reaper = Reaper(store, lease_seconds=30, reap_seconds=1, resend_seconds=0, max_losses=3)
    assert {waiting.id, delivered.id} <= messages_in_broker(store)
    assert [j.id for j in reaper.unsent()] == [lonely.id]
    later = Reaper(store, lease_seconds=30, reap_seconds=1, resend_seconds=3600, max_losses=3)
    assert later.unsent() == []  # queued only just now: the send may be on its way
    env.redis.delete("q-rec\x06\x166")
    env.redis.hdel("unacked", "tag-1")


def pass_now(store: JobStore, reaper: Reaper) -> tuple[list[Job], list[Job]]:
    """A reaper pass that takes this period's turn, whoever took the last."""
    store.redis.delete("rnnq:turn:reaper")
    made = reaper.pass_once()
    if made is None:
        pytest.fail("the pass did not take the period's turn, though the turn's key was just deleted")
    return made


def test_reaper_waits_one_lease_after_redis_comes_back(store: JobStore) -> None:
    job = store.create("train", {}, "train")
    take(store, job.id, "a")
    lose_lease(store, job.id)
    _, uptime = store.redis_uptime()
    reaper = Reaper(store, lease_seconds=uptime + 3600, reap_seconds=0, resend_seconds=60, max_losses=3)
    assert pass_now(store, reaper)[0] == []  # Redis has not been up for a lease: no loss counted
    assert store.get(job.id).state == "running"
    reaper = Reaper(store, lease_seconds=2, reap_seconds=0, resend_seconds=60, max_losses=3)
    reaper._run_id = "another-server"  # as if Redis had restarted (or failed over) since the last pass
    assert pass_now(store, reaper)[0] == []
    assert store.get(job.id).state == "running"
    wait_for(lambda: time.monotonic() >= reaper._grace_until, 10, "the grace of one lease after the restart")
    assert [j.id for j in pass_now(store, reaper)[0]] == [job.id]


def test_one_reaper_pass_per_period_for_the_whole_cluster(store: JobStore) -> None:
    """Every node runs the loop; one pass per period walks the running jobs, and the
    nodes without the turn send nothing after bidding for it (no INFO, no reap). Each
    node's heartbeat rides on its bid, so all three are online."""
    job = store.create("train", {}, "train")
    take(store, job.id, "a")
    lose_lease(store, job.id)
    names = [f"gpu0@reaper-test-{i}" for i in range(3)]
    nodes = [Reaper(store, lease_seconds=0, reap_seconds=5, resend_seconds=60, max_losses=3, node=n) for n in names]
    wait_for(lambda: store.redis_uptime()[1] >= 5, 10, "Redis up for one lease + reap")
    store.redis.delete("rnnq:turn:reaper")
    made = [n.pass_once() for n in nodes]
    assert made[0] is not None and [j.id for j in made[0][0]] == [job.id]
    assert made[1:] == [None, None]
    assert set(names) <= set(store.workers_online())
    assert 14_000 < store.redis.pttl(f"rnnq:worker:{names[2]}") <= 15_000  # three periods, at least 15 s
    for name in names:
        store.forget_worker(name)
    store.redis.delete("rnnq:turn:reaper")  # the period is over


def scripts_run(store: JobStore) -> int:
    """EVALSHA calls since the last CONFIG RESETSTAT that ran (a NOSCRIPT reply fails)."""
    stats = store.redis.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "failed_calls": 0})
    return int(stats["calls"]) - int(stats.get("failed_calls", 0))


def test_a_reaper_pass_looks_only_at_lapsed_leases(store: JobStore) -> None:
    """Leases are kept as deadlines too: a pass over many live jobs runs no script per
    job, and a lease that lapses by its TTL is found by its deadline. Counted with INFO
    commandstats, not timed."""
    live = [store.create("train", {}, "train") for _ in range(50)]
    for job in live:
        take(store, job.id, "a", lease=60)
    short = store.create("train", {}, "train")
    take(store, short.id, "b", lease=2)
    reaper = Reaper(store, lease_seconds=0, reap_seconds=1, resend_seconds=3600, max_losses=3)
    wait_for(lambda: store.redis_uptime()[1] >= 1, 10, "Redis up for one lease + reap")
    assert pass_now(store, reaper)[0] == []
    store.redis.config_resetstat()
    assert pass_now(store, reaper)[0] == []  # the short lease is still alive
    assert scripts_run(store) == 1  # _DUE; no _REAP for any of the 51 running jobs
    assert "cmdstat_smembers" not in store.redis.info("commandstats")
    wait_for(lambda: not store.redis.exists(f"rnnq:lease:{short.id}"), 10, "the short lease's TTL to run out")
    store.redis.config_resetstat()
    assert [j.id for j in pass_now(store, reaper)[0]] == [short.id]
    assert scripts_run(store) == 2  # _DUE, then _REAP for that job only
    assert store.get(short.id).state == "queued" and store.get(short.id).worker_losses == 1
    assert store.redis.zscore("rnnq:deadlines", short.id) is None
    assert all(store.get(job.id).state == "running" for job in live)


def test_running_jobs_the_deadlines_miss_are_walked_and_indexed(store: JobStore) -> None:
    """Jobs started by a version without the deadline index (or an index lost): the
    counts differ, so the pass walks every running job, and scores the live ones."""
    alive = store.create("train", {}, "train")
    take(store, alive.id, "a")
    dead = store.create("train", {}, "train")
    take(store, dead.id, "b")
    store.redis.delete("rnnq:deadlines", f"rnnq:lease:{dead.id}")
    reaper = Reaper(store, lease_seconds=0, reap_seconds=1, resend_seconds=3600, max_losses=3)
    wait_for(lambda: store.redis_uptime()[1] >= 1, 10, "Redis up for one lease + reap")
    assert [j.id for j in pass_now(store, reaper)[0]] == [dead.id]
    expiry = store.redis.zscore("rnnq:deadlines", alive.id)
    assert expiry is not None and expiry == store.redis.pexpiretime(f"rnnq:lease:{alive.id}")
    assert store.redis.zcard("rnnq:deadlines") == store.redis.scard("rnnq:running") == 1


def test_deleting_the_newest_job_of_a_name_leaves_the_name_to_the_older(store: JobStore) -> None:
    old = store.create("train", {}, "train", name="shared-name")
    wait_for(lambda: time.time() > old.created_at, 5, "the clock to move past the first submit")
    new = store.create("train", {}, "train", name="shared-name")
    assert store.resolve("shared-name").id == new.id
    store.delete(new.id)
    assert store.resolve("shared-name").id == old.id


def test_the_cli_store_rides_out_a_redis_restart(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    proc, url = start_redis(tmp_path, "--appendonly", "yes")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    store = JobStore(url, retry_seconds=60)
    job = store.create("train", {}, "train")
    stop(proc)
    import threading

    restarted: list[object] = []
    threading.Timer(2.0, lambda: restarted.append(start_redis(tmp_path, "--appendonly", "yes", port=port))).start()
    try:
        assert store.get(job.id).state == "queued"  # waits for the restart instead of failing
        assert "retrying" in capfd.readouterr().err
    finally:
        for p in restarted:
            stop(p[0])  # type: ignore[index]


def test_a_redis_never_reached_fails_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    """A wrong URL is an error at once, not after the retry window."""
    from tests.integration.conftest import free_port
    from workers.errors import RedisUnavailable

    store = JobStore(f"redis://127.0.0.1:{free_port()}/0", retry_seconds=3600)
    with pytest.raises(RedisUnavailable, match="cannot reach Redis"):
        store.get("0123456789ab")
    assert "retrying" not in capfd.readouterr().err


def test_a_talk_renews_the_lease_only_once_a_third_of_it_is_gone(store: JobStore) -> None:
    """A running job's talk (JobStore.report, every 2 s) leaves a lease with more than two
    thirds of its TTL alone, and renews one with less; the deadline index follows the
    lease's own expiry either way. Other writes and the lease thread always renew."""
    job = store.create("train", {"x": 1}, "train")
    a = take(store, job.id, "a", lease=30.0)
    lease = f"rnnq:lease:{job.id}"

    def deadline_matches() -> bool:
        return int(store.redis.zscore("rnnq:deadlines", job.id) or 0) == store.redis.execute_command(
            "PEXPIRETIME", lease)

    store.redis.pexpire(lease, 25_000)  # five seconds of the lease used
    store.redis.zadd("rnnq:deadlines", {job.id: store.redis.execute_command("PEXPIRETIME", lease)})
    store.report(a, [{"step": 1}], [])
    assert 20_000 < store.redis.pttl(lease) <= 25_000 and deadline_matches()

    store.redis.pexpire(lease, 15_000)  # half of it used
    store.report(a, [{"step": 2}], [])
    assert store.redis.pttl(lease) > 25_000 and deadline_matches()

    store.redis.pexpire(lease, 25_000)
    assert store.renew_lease(a)  # the lease thread's renewal is not lazy
    assert store.redis.pttl(lease) > 25_000 and deadline_matches()

    store.redis.delete(lease)  # lapsed (a Redis restart longer than the lease): the talk takes it back
    store.report(a, [{"step": 3}], [])
    assert store.redis.get(lease) == a.token and store.redis.pttl(lease) > 25_000 and deadline_matches()
