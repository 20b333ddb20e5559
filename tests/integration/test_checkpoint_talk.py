"""Checkpoints ride on a running job's talk with Redis (workers.runner._Control), on a
real Redis and a real artifact directory: what gets uploaded, what gets published, and
what a Redis outage or a lost lease does to them.

The loop writes each checkpoint name to one path and hands it to `checkpoint`; the next
talk (`should_stop` when due, or `flush` as training ends) uploads the newest file of
each name and publishes its pointer with the progress events, in one script.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import start_redis, stop
from workers import runner
from workers.artifacts import LocalArtifactStore
from workers.jobstore import Attempt, Fenced, JobStore

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_dir(tmp_path: Path) -> Path:
    path = tmp_path / "redis"
    path.mkdir()
    return path


@pytest.fixture
def server(redis_dir: Path) -> Iterator[tuple[list[object], str]]:
    """A Redis of its own with the append-only file, so that a test can restart it."""
    proc, url = start_redis(redis_dir, "--appendonly", "yes", "--appendfsync", "always")
    holder: list[object] = [proc]
    yield holder, url
    stop(holder[0])  # type: ignore[arg-type]


class Job:
    """One running job's attempt, its lease and control, as workers.runner.run makes them."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.store = JobStore(url)
        self.artifacts = LocalArtifactStore(tmp / "artifacts")
        self.id = self.store.create("train", {"task": "lm"}, "train").id
        attempt = self.store.start(self.id, "w1@host", "token-1", 30.0, max_losses=3)
        assert isinstance(attempt, Attempt)
        self.lease = runner.Lease(self.store, attempt)
        self.control = runner._Control(self.id, "w1@host", self.lease, self.artifacts)
        self.file = tmp / "last.safetensors"  # the one path the loop writes `last` to

    def write(self, step: int) -> None:
        """What the loop does at a checkpoint: overwrite the file, then on_checkpoint."""
        self.file.write_bytes(f"weights at step {step}".encode())
        self.control.checkpoint("last.safetensors", self.file, step)

    def published(self) -> tuple[str | None, int | None]:
        record = self.store.redis.hgetall(f"rnnq:job:{self.id}")
        step = record.get("ckpt_last_step")
        return record.get("ckpt_last"), int(step) if step is not None else None

    def objects(self) -> list[str]:
        root = self.artifacts.local_path(f"jobs/{self.id}/ckpt")
        return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_only_the_newest_checkpoint_before_a_talk_is_uploaded_and_published(server: tuple[list[object], str],
                                                                              tmp_path: Path) -> None:
    job = Job(server[1], tmp_path)
    for step in (10, 20, 30):  # three checkpoints between two talks
        job.write(step)
    job.control.keep({"step": 30, "val_loss": 1.25})
    job.control.flush()
    key, step = job.published()
    assert step == 30 and (key or "").startswith(f"jobs/{job.id}/ckpt/last-a1-s30-")  # named by attempt and step
    assert job.artifacts.get_bytes(key) == b"weights at step 30"  # type: ignore[arg-type]
    assert job.objects() == [Path(key).name]  # 10 and 20 were never uploaded
    # The events of the same talk are in the stream, and the record has the evaluation.
    assert [e["step"] for _, e in job.store.events(job.id)] == [30]
    assert job.store.redis.hget(f"rnnq:job:{job.id}", "val_loss") == "1.25"

    job.write(40)
    job.control.flush()
    key40, _ = job.published()
    job.write(50)
    job.control.flush()
    key50, step = job.published()
    assert step == 50
    # The object a publication replaced is deleted one publication later, not at once.
    assert job.objects() == sorted([Path(key50).name, Path(key40).name])  # type: ignore[arg-type]


def test_training_goes_on_through_a_redis_outage_and_publishes_after_it(
        server: tuple[list[object], str], redis_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "CHECK_SECONDS", 0.0)  # every check talks: no waiting in the test
    holder, url = server
    job = Job(url, tmp_path)
    job.write(10)
    assert not job.control.should_stop()
    assert job.published()[1] == 10

    stop(holder[0])  # type: ignore[arg-type]
    job.write(20)
    job.control.keep({"step": 20})
    assert not job.control.should_stop()  # the talk failed; the job is not stopped
    uploaded = job.objects()
    assert len(uploaded) == 2  # 20 is uploaded, waiting for its pointer
    job.write(30)  # written during the outage: supersedes 20, which was never published
    assert not job.control.should_stop()

    port = url.rsplit(":", 1)[1].split("/")[0]
    holder[0], _ = start_redis(redis_dir, "--appendonly", "yes", port=int(port))
    assert not job.control.should_stop()
    key, step = job.published()
    assert step == 30 and job.artifacts.get_bytes(key) == b"weights at step 30"  # type: ignore[arg-type]
    assert not any("-s20-" in name for name in job.objects())  # the superseded upload is gone


def test_a_copy_that_lost_its_job_publishes_nothing_and_deletes_its_upload(server: tuple[list[object], str],
                                                                           tmp_path: Path) -> None:
    job = Job(server[1], tmp_path)
    job.write(10)
    job.control.flush()
    before = job.published()
    # The lease lapses while the copy is paused; the reaper queues the job and another
    # worker takes it.
    job.store.redis.delete(f"rnnq:lease:{job.id}")
    job.store.redis.zadd("rnnq:deadlines", {job.id: 0}, xx=True)
    assert [j.id for j in job.store.reap(max_losses=3)] == [job.id]
    assert isinstance(job.store.start(job.id, "w2@host", "token-2", 30.0, max_losses=3), Attempt)

    job.write(20)  # the stale copy wakes up and checkpoints as its training ends
    with pytest.raises(Fenced):
        job.control.flush()
    assert job.published() == before
    assert job.lease.lost
    assert job.objects() == [Path(before[0]).name]  # type: ignore[arg-type] - its upload of 20 was deleted
