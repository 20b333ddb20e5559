"""A full disk against real workers: a node whose disk fills gives its job to another
node, which resumes it; an artifact store that fills fails the job at the loss cap,
naming the disk, and `rnnq resume` finishes it once there is room. Nothing is lost.

The disks are small tmpfs mounts, so these tests need root; elsewhere they skip, except
where RNNQ_REQUIRE_CLUSTER=1 (set by .ci/run, which runs as root) makes that a failure.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import ROOT, Env, Worker, free_port, scrape, start_redis, start_worker, stop, total
from tests.support import job_step, make_corpus, wait_for, wait_state
from workers.jobstore import JobStore

pytestmark = pytest.mark.integration

FAST = {"RNNQ_LEASE_SECONDS": "2", "RNNQ_REAP_SECONDS": "0.5", "RNNQ_VISIBILITY_TIMEOUT": "3600"}
MODEL = ["--hidden", "24", "--embed", "8", "--seq-len", "16", "--batch-size", "4", "--eval-every", "100000",
         "--patience", "1000", "--checkpoint-every", "25"]


def _can_mount() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    if shutil.which("mount") is None:
        return "needs mount(8)"
    return None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted after the test."""
    why = _can_mount()
    if why is not None:
        if os.environ.get("RNNQ_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"RNNQ_REQUIRE_CLUSTER=1 but the full-disk tests {why}")
        pytest.skip(f"the full-disk tests {why}")
    path = tmp_path / "disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> Path:
    """Write a file until the disk has no room left; returns it (delete it to make room)."""
    ballast = disk / f"ballast-{uuid.uuid4().hex[:6]}"
    with ballast.open("wb", buffering=0) as f, pytest.raises(OSError) as full:
        while True:
            f.write(b"\0" * (1 << 16))
    assert full.value.errno == errno.ENOSPC
    return ballast


def _submit(env: Env, queue: str, seconds: float) -> str:
    """A job of `seconds` of training, so it outlasts the test's moves on a fast machine;
    the seconds are the loop's own, carried across attempts in the checkpoint."""
    path = env.tmp / "corpus.txt"
    path.write_text(make_corpus(20_000))
    res = env.cli("train", str(path), *MODEL, "--time-budget", str(seconds), "--queue", queue, "--json")
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["job_id"])


@dataclass
class Nodes:
    """Worker nodes on one queue, each with its own home (scratch and input cache)."""

    env: Env
    queue: str = field(default_factory=lambda: f"disk-{uuid.uuid4().hex[:6]}")
    started: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = JobStore(self.env.vars["RNNQ_REDIS_URL"])

    def start(self, name: str, home: Path, metrics_port: int | None = None) -> Worker:
        argv = None
        if metrics_port is not None:  # its metrics files under its home, as by default
            argv = [sys.executable, "-m", "cli.main", "worker", "--queues", self.queue, "--concurrency", "1",
                    "--name", f"test-{uuid.uuid4().hex[:8]}", "--metrics-port", str(metrics_port),
                    "--metrics-addr", "127.0.0.1"]
        worker = start_worker({**self.env.vars, "RNNQ_HOME": str(home)}, self.env.tmp / f"{name}.log",
                              queues=self.queue, argv=argv)
        self.started.append(worker)
        return worker

    def runs_on(self, job_id: str, worker: Worker) -> bool:
        node = self.store.get(job_id).worker
        return node is not None and node.split("@")[0] in " ".join(map(str, worker.proc.args))


@pytest.fixture
def nodes(env: Env) -> Iterator[Nodes]:
    env.vars.update(FAST)
    started = Nodes(env)
    yield started
    for worker in started.started:
        stop(worker.proc)


def _published_step(store: JobStore, job_id: str) -> int:
    """The step of the job's published "last" checkpoint (0 before the first)."""
    key = store.get(job_id).artifacts.get("last", "")
    return int(key.rsplit("-s", 1)[1].split("-")[0]) if key else 0


def test_a_node_whose_disk_fills_gives_its_job_to_another(nodes: Nodes, small_disk: Path) -> None:
    env, store = nodes.env, nodes.store
    env.vars["RNNQ_MAX_WORKER_LOSSES"] = "5"
    # Worker A keeps its scratch, input cache and metrics files on the small disk; B on the test's disk.
    port = free_port()
    a = nodes.start("a", small_disk / "home", metrics_port=port)
    job_id = _submit(env, nodes.queue, seconds=8)
    wait_for(lambda: _published_step(store, job_id) >= 50, 120, "a checkpoint at step 50 or later")
    published = _published_step(store, job_id)
    _fill(small_disk)  # A's next checkpoint has no room
    wait_for(lambda: store.get(job_id).worker_losses == 1, 60, "A to give the job up")
    assert store.get(job_id).state == "queued"  # A, its disk full, does not take it again
    # Counted where the alert sees it, though A's metrics files are on the full disk.
    assert total(scrape(port), "rnnq_jobs_given_up_total", queue=nodes.queue, reason="disk_full") == 1
    b = nodes.start("b", env.tmp / "home-b")
    wait_state(store, job_id, ("succeeded", "failed"), timeout=300)
    record = store.get(job_id)
    assert record.state == "succeeded", record.error
    assert record.result is not None and record.result["stopped_by"] == "time_budget"
    assert record.worker_losses == 1 and record.attempts == 2
    assert record.last_loss is not None and "No space left on device" in record.last_loss
    assert nodes.runs_on(job_id, b)
    # B went on from a checkpoint A published, not from the start.
    assert record.resumed_from is not None and record.resumed_from >= published
    assert a.proc.poll() is None, "a full disk must not kill the worker"
    status = env.cli("status", job_id)
    assert "given up" in status.output and "No space left on device" in status.output


def test_a_full_artifact_store_fails_at_the_cap_and_resume_finishes(nodes: Nodes, small_disk: Path) -> None:
    env, store = nodes.env, nodes.store
    env.vars.update({"RNNQ_MAX_WORKER_LOSSES": "2", "RNNQ_ARTIFACTS": str(small_disk / "artifacts")})
    worker = nodes.start("w", env.tmp / "home")
    job_id = _submit(env, nodes.queue, seconds=6)
    wait_for(lambda: _published_step(store, job_id) >= 50, 120, "a checkpoint at step 50 or later")
    ballast = _fill(small_disk)
    published = _published_step(store, job_id)
    wait_state(store, job_id, ("succeeded", "failed"), timeout=300)
    record = store.get(job_id)
    assert record.state == "failed"
    assert record.error is not None and "worker lost 2 times" in record.error
    assert "No space left on device" in record.error
    assert record.attempts == 2
    # What was published before the disk filled is still there, and whole.
    assert _published_step(store, job_id) >= published
    # Room again: the user resumes, and the job goes on from that checkpoint.
    ballast.unlink()
    res = env.cli("resume", job_id)
    assert res.exit_code == 0, res.output
    wait_state(store, job_id, ("succeeded", "failed"), timeout=300)
    record = store.get(job_id)
    assert record.state == "succeeded", record.error
    assert record.result is not None and record.result["stopped_by"] == "time_budget"
    assert record.resumed_from is not None and record.resumed_from >= published
    assert job_step(store, job_id) == record.result["steps"] > record.resumed_from
    # The result's artifacts are in the store and load.
    assert env.cli("result", job_id).exit_code == 0
    assert worker.proc.poll() is None


def test_a_submit_to_a_full_artifact_store_is_one_line_and_queues_nothing(env: Env, small_disk: Path) -> None:
    env.vars["RNNQ_ARTIFACTS"] = str(small_disk / "artifacts")
    (small_disk / "artifacts").mkdir()
    _fill(small_disk)
    corpus = env.tmp / "corpus.txt"
    corpus.write_text(make_corpus(200_000))
    res = env.cli("train", str(corpus), *MODEL, "--max-steps", "10")
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], res.output
    assert env.job_count() == 0
    assert not [p for p in (small_disk / "artifacts").rglob("*") if p.is_file()], "a partial input was left behind"


def test_a_node_whose_disk_is_full_takes_no_more_jobs_while_it_is_full(nodes: Nodes, small_disk: Path) -> None:
    """Otherwise it would take every queued job and give each up at once, using up their
    worker losses before a healthy node got to them."""
    env, store = nodes.env, nodes.store
    env.vars["RNNQ_MAX_WORKER_LOSSES"] = "3"
    a = nodes.start("a", small_disk / "home")
    _fill(small_disk)
    jobs = [_submit(env, nodes.queue, seconds=2) for _ in range(3)]
    wait_for(lambda: sum(store.get(j).worker_losses for j in jobs) >= 1, 60, "A to give a job up")
    b = nodes.start("b", env.tmp / "home-b")
    for job_id in jobs:
        wait_state(store, job_id, ("succeeded", "failed"), timeout=300)
    records = [store.get(j) for j in jobs]
    assert [r.state for r in records] == ["succeeded"] * 3, [r.error for r in records]
    assert sum(r.worker_losses for r in records) == 1, "the full node took another job"
    assert all(nodes.runs_on(j, b) for j in jobs)
    assert a.proc.poll() is None
    assert b"is full: taking no job" in a.log.read_bytes()


METERED_ON_A_FULL_DISK = """
import os, sys
from workers import metrics
metrics.job_started("train", "first", "w", 1.0)
with open(sys.argv[1], "wb", buffering=0) as f:
    try:
        while True:
            f.write(b"0" * 65536)
    except OSError:
        pass
for i in range(2000):  # new label sets: the values file must grow
    metrics.job_started("train", f"queue-{i:05d}-{'q' * 40}", "w", 1.0)
    metrics.job_ended("train", f"queue-{i:05d}-{'q' * 40}", "w", "succeeded", 2.0)
print("measured on")
"""


def test_metrics_on_a_full_disk_never_kill_the_process(small_disk: Path) -> None:
    """A pool process's metric values are a memory-mapped file: on a full disk a new page
    written through the map would be SIGBUS (and the job with it); it is an error the
    metrics code swallows instead."""
    metrics_dir = small_disk / "metrics"
    metrics_dir.mkdir()
    out = subprocess.run([sys.executable, "-c", METERED_ON_A_FULL_DISK, str(small_disk / "ballast")],
                         cwd=ROOT, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"exit {out.returncode}:\n{out.stderr[-2000:]}"
    assert "measured on" in out.stdout


def test_result_output_to_a_full_disk_is_one_line_and_leaves_no_half_file(nodes: Nodes, small_disk: Path) -> None:
    env, store = nodes.env, nodes.store
    nodes.start("w", env.tmp / "home-w")
    job_id = _submit(env, nodes.queue, seconds=1)
    wait_state(store, job_id, ("succeeded", "failed"), timeout=120)
    _fill(small_disk)
    out = small_disk / "out"
    res = env.cli("result", job_id, "--output", str(out))
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "No space left on device" in res.output, res.output
    assert not [p.name for p in out.iterdir()]  # no checkpoint cut short, no temporary file
    room = env.tmp / "out"
    assert env.cli("result", job_id, "--output", str(room)).exit_code == 0
    assert any(p.name.endswith(".safetensors") for p in room.iterdir())


def _refuses_writes(client: redis.Redis) -> bool:
    """Redis says MISCONF: its last background save failed, so it takes no write."""
    try:
        client.set("rnnq:test:probe", "1")
    except redis.ResponseError as exc:
        assert "MISCONF" in str(exc), exc
        return True
    return False


def test_redis_on_a_full_disk_loses_no_job(env: Env, small_disk: Path) -> None:
    # Redis's own disk fills: its snapshot fails and it refuses every write (MISCONF),
    # leases, reports, acks and the reaper's included, while its keys still expire. The
    # running job trains on through it, longer than a lease; once Redis can save again
    # the job ends exactly once, and the worker (its broker connection refused too) lives
    # to run the next job.
    redis_dir = small_disk / "redis"
    redis_dir.mkdir()
    proc, url = start_redis(redis_dir, "--save", "1 1")  # a snapshot a second after any write
    queue = f"misconf-{uuid.uuid4().hex[:6]}"
    env.vars.update(FAST, RNNQ_REDIS_URL=url, RNNQ_MAX_WORKER_LOSSES="5")
    client, store = redis.Redis.from_url(url), JobStore(url)
    worker = None
    try:
        worker = start_worker(env.vars, env.tmp / "w.log", queues=queue)
        job_id = _submit(env, queue, seconds=6)
        wait_for(lambda: job_step(store, job_id) >= 20, 120, "the job to train")
        ballast = _fill(small_disk)
        wait_for(lambda: _refuses_writes(client), 30, "Redis to refuse writes")
        wait_for(lambda: not client.exists(f"rnnq:lease:{job_id}"), 30, "the job's lease to lapse")
        assert _refuses_writes(client)  # it lapsed while nobody could write, the reaper included
        ballast.unlink()
        wait_for(lambda: not _refuses_writes(client), 60, "Redis to save again and take writes")
        wait_state(store, job_id, ("succeeded", "failed"), timeout=300)
        record = store.get(job_id)
        assert record.state == "succeeded", record.error
        assert record.result is not None and record.result["stopped_by"] == "time_budget"
        assert worker.proc.poll() is None, "Redis refusing writes must not kill the worker"
        after = _submit(env, queue, seconds=1)
        wait_state(store, after, ("succeeded", "failed"), timeout=120)
        assert store.get(after).state == "succeeded", store.get(after).error
    finally:
        if worker is not None:
            stop(worker.proc)
        stop(proc)
