"""Metrics a user reads: the worker's endpoint under prefork, the cluster exporter, plots.

Real Redis, real worker processes and real HTTP scrapes; Prometheus itself is in
tests/e2e.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Env,
    Samples,
    Worker,
    free_port,
    scrape,
    start_exporter,
    start_worker,
    stop,
    total,
    wait_for,
)
from tests.support import make_corpus, sentiment_csv, wait_state
from workers.app import make_app
from workers.jobstore import JobStore
from workers.settings import resolve

pytestmark = pytest.mark.integration

MODEL = ["--hidden", "24", "--embed", "8", "--seq-len", "16", "--batch-size", "4", "--eval-every", "50"]


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(lab) for (n, lab), _ in samples.items() if n == name]


def _submit(env: Env, *args: str) -> str:
    path = env.tmp / "corpus.txt"
    if not path.exists():
        path.write_text(make_corpus(20_000))
    res = env.cli("train", str(path), *MODEL, *args, "--json")
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["job_id"])


def _wait_final(env: Env, job_id: str, timeout: float = 180) -> None:
    wait_state(JobStore(env.vars["RNNQ_REDIS_URL"]), job_id, timeout=timeout)


@pytest.fixture
def exporter(env: Env) -> Iterator[int]:
    proc, port = start_exporter(env.vars)
    yield port
    stop(proc)


@pytest.fixture
def metered(env: Env) -> Iterator[tuple[Worker, int, str]]:
    """A worker with two pool processes and a metrics port, on its own queue."""
    port, queue = free_port(), f"obs-{uuid.uuid4().hex[:6]}"
    env.vars.setdefault("RNNQ_LEASE_SECONDS", "2")
    env.vars.setdefault("RNNQ_REAP_SECONDS", "0.5")
    argv = [sys.executable, "-m", "cli.main", "worker", "--queues", queue, "--concurrency", "2",
            "--metrics-port", str(port), "--metrics-addr", "127.0.0.1", "--name", f"obs-{queue}"]
    w = start_worker(env.vars, env.tmp / "worker.log", argv=argv)
    yield w, port, queue
    stop(w.proc)


def test_exporter_counts_every_priority_list_and_queued_jobs(env: Env, exporter: int) -> None:
    queue = f"idle-{uuid.uuid4().hex[:6]}"  # no worker consumes it
    first = _submit(env, "--queue", queue, "--max-steps", "10")
    _submit(env, "--queue", queue, "--max-steps", "10")
    app = make_app(resolve(redis_url=env.vars["RNNQ_REDIS_URL"]))
    app.send_task("rnnq.train", args=[first], queue=queue, priority=6)  # kombu's "<queue>\x06\x166" list
    assert env.redis.llen(queue + "\x06\x166") == 1

    samples = scrape(exporter)
    assert total(samples, "rnnq_redis_up") == 1
    assert total(samples, "rnnq_queue_messages", queue=queue) == 3
    assert total(samples, "rnnq_queue_unacked_messages", queue=queue) == 0
    assert total(samples, "rnnq_jobs", queue=queue, state="queued") == 2
    assert total(samples, "rnnq_jobs", queue=queue, state="running") == 0
    assert total(samples, "rnnq_queue_oldest_job_age_seconds", queue=queue) > 0
    assert series(samples, "rnnq_job_train_loss") == []  # nothing runs: no per-job series
    env.redis.delete(queue, queue + "\x06\x166")


def test_worker_endpoint_sums_pool_processes_and_job_series_end_with_the_job(
        env: Env, metered: tuple[Worker, int, str], exporter: int) -> None:
    _, port, queue = metered
    # Neither job can finish before it is cancelled, so both are running at once by
    # construction, whatever the machine's speed; cancelling is what ends them.
    jobs = [_submit(env, "--queue", queue, "--max-steps", "1000000", "--name", f"obs{i}") for i in range(2)]
    store = JobStore(env.vars["RNNQ_REDIS_URL"])
    wait_for(lambda: all(store.get(j).state == "running" and store.get(j).progress for j in jobs), 120,
             "both jobs to run and report")
    running = scrape(exporter)
    live = {s["job_id"]: s for s in series(running, "rnnq_job_train_loss")}
    assert set(live) == set(jobs)  # one series per running job, labelled with its id and name
    assert {live[j]["job_name"] for j in jobs} == {"obs0", "obs1"}
    assert total(running, "rnnq_workers_busy") >= 1
    assert total(scrape(port), "rnnq_worker_jobs_running", queue=queue) == 2  # one per pool process
    for j in jobs:
        assert env.cli("cancel", j).exit_code == 0
    for j in jobs:
        _wait_final(env, j)
    # The record is written before the pool process counts the job finished.
    wait_for(lambda: total(scrape(port), "rnnq_jobs_finished_total", queue=queue) == 2, 30, "both jobs counted")

    samples = scrape(port)
    results = [store.get(j).result for j in jobs]
    assert all(store.get(j).state == "cancelled" for j in jobs)
    # Two pool processes wrote these; the parent's endpoint adds them up exactly.
    assert total(samples, "rnnq_jobs_started_total", queue=queue) == 2
    assert total(samples, "rnnq_jobs_finished_total", queue=queue, state="cancelled") == 2
    assert total(samples, "rnnq_jobs_finished_total", queue=queue, state="failed") == 0
    assert total(samples, "rnnq_tokens_trained_total", queue=queue) == sum(r["tokens"] for r in results)  # type: ignore[index]
    assert total(samples, "rnnq_train_step_duration_seconds_count", queue=queue) > 0
    assert total(samples, "rnnq_job_queue_wait_seconds_count", queue=queue) == 2
    assert total(samples, "rnnq_job_duration_seconds_count", queue=queue, state="cancelled") == 2
    assert total(samples, "rnnq_worker_jobs_running", queue=queue) == 0
    assert not series(samples, "rnnq_gpu_utilization_ratio")  # no GPU here: absent, no error

    after = scrape(exporter)
    assert not {s["job_id"] for s in series(after, "rnnq_job_train_loss")} & set(jobs)  # labels gone with the jobs
    assert total(after, "rnnq_jobs", queue=queue, state="cancelled") == 2


def test_a_running_jobs_held_out_figures_are_exported_with_its_loss(
        env: Env, metered: tuple[Worker, int, str], exporter: int) -> None:
    # A classifier reports accuracy and macro F1 at each evaluation, beside its validation
    # loss: the exporter serves them while it runs (the dashboards' "Held-out figures").
    _, _, queue = metered
    data = sentiment_csv(env.tmp / "reviews.csv")
    res = env.cli("train", str(data), "--task", "classify", "--hidden", "16", "--embed", "8", "--batch-size", "8",
                  "--eval-every", "5", "--max-steps", "1000000", "--queue", queue, "--json")
    assert res.exit_code == 0, res.output
    job = str(json.loads(res.stdout)["job_id"])
    wait_for(lambda: bool(series(scrape(exporter), "rnnq_job_figure")), 120, "a scrape after the first evaluation")
    samples = scrape(exporter)
    assert {(s["job_id"], s["figure"]) for s in series(samples, "rnnq_job_figure")} == {
        (job, "accuracy"), (job, "macro_f1")}
    # the value served is one the worker evaluated: an evaluation event of this job carries it
    store = JobStore(env.vars["RNNQ_REDIS_URL"])
    evaluated = {event.get("figures", {}).get("accuracy") for _, event in store.events(job)}
    assert total(samples, "rnnq_job_figure", job_id=job, figure="accuracy") in evaluated
    assert series(samples, "rnnq_job_validation_loss")
    assert env.cli("cancel", job).exit_code == 0
    _wait_final(env, job)
    assert not series(scrape(exporter), "rnnq_job_figure")  # gone with the job


@pytest.fixture
def long_lease(env: Env) -> None:
    env.vars["RNNQ_LEASE_SECONDS"] = "600"  # the killed job is not run again during the test


def test_killed_pool_process_leaves_no_running_gauge(env: Env, long_lease: None,
                                                     metered: tuple[Worker, int, str]) -> None:
    _, port, queue = metered
    job_id = _submit(env, "--queue", queue, "--max-steps", "100000")
    store = JobStore(env.vars["RNNQ_REDIS_URL"])
    wait_for(lambda: store.get(job_id).pid is not None and store.get(job_id).progress is not None, 120, "the job")
    assert total(scrape(port), "rnnq_worker_jobs_running", queue=queue) == 1
    pid = store.get(job_id).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the pool child dies without a word
    wait_for(lambda: total(scrape(port), "rnnq_worker_jobs_running", queue=queue) == 0, 30,
             "the dead child's gauge to be dropped")
    assert total(scrape(port), "rnnq_jobs_started_total", queue=queue) == 1  # counters outlive the child


def test_a_broken_metrics_directory_never_fails_a_job(env: Env, metered: tuple[Worker, int, str]) -> None:
    worker, port, queue = metered
    metrics_dir = Path(env.vars["RNNQ_HOME"]) / "metrics" / f"obs-{queue}"
    assert metrics_dir.is_dir()
    shutil.rmtree(metrics_dir)  # the pool processes can no longer write their values
    job_id = _submit(env, "--queue", queue, "--max-steps", "60")
    _wait_final(env, job_id)
    assert JobStore(env.vars["RNNQ_REDIS_URL"]).get(job_id).state == "succeeded"
    assert "metrics: job_started failed" in worker.log.read_text()
    scrape(port)  # the endpoint still answers


def test_plot_writes_the_loss_curve(env: Env, worker: Worker) -> None:
    job_id = _submit(env, "--max-steps", "150", "--name", "plotted")
    _wait_final(env, job_id)
    out = env.tmp / "loss.png"
    res = env.cli("plot", "plotted", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5_000
    assert "evaluations" in res.stdout

    bad = env.cli("plot", "no-such-job", "-o", str(out))
    assert bad.exit_code != 0 and "no-such-job" in bad.output
    wrong = env.cli("plot", job_id, "-o", str(env.tmp / "loss.unknown-format"))
    assert wrong.exit_code != 0 and "cannot write" in wrong.output
