"""Sweeps through the real queue: real Redis, real worker processes, a real Optuna study."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.integration.conftest import Env, Worker, scrape, start_exporter, start_worker, stop, total, wait_for
from tests.support import job_step, make_corpus
from workers import sweep as sweeps
from workers.jobstore import JobStore

pytestmark = pytest.mark.integration

FAST = {"RNNQ_LEASE_SECONDS": "2", "RNNQ_REAP_SECONDS": "0.5", "RNNQ_MAX_WORKER_LOSSES": "3",
        "RNNQ_VISIBILITY_TIMEOUT": "3600"}

# A tiny LSTM: each trial trains in a second or two; learning rates far apart so the
# pruner has weak trials to stop. Evaluations every 10 steps are the pruner's rungs.
SWEEP = """\
name: {name}
base:
  data: corpus.txt
  arch: lstm
  embed: 8
  seq_len: 16
  batch_size: 4
  eval_every: 10
  patience: 1000
  checkpoint_every: 10
  warmup_steps: 0
space:
  lr: {{low: 0.00003, high: 0.05, log: true}}
  hidden: [8, 24]
trials: {trials}
budget: {{max_steps: {steps}}}
sampler: {{name: random, seed: 7}}
pruner: {pruner}
parallel: 2
queue: {queue}
"""


@pytest.fixture
def fast(env: Env) -> Env:
    env.vars.update(FAST)
    return env


@pytest.fixture
def queue() -> str:
    return f"sweep-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def pool(fast: Env, queue: str) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    spawn = [start_worker(fast.vars, fast.tmp / f"w{i}.log", queues=queue) for i in range(2)]
    started.extend(spawn)
    yield started
    for w in started:
        stop(w.proc)


ASHA = "{name: asha, min_resource: 10, reduction_factor: 2}"


def _sweep_file(env: Env, queue: str, name: str, trials: int, steps: int, pruner: str = ASHA) -> Path:
    (env.tmp / "corpus.txt").write_text(make_corpus(20_000))
    path = env.tmp / "sweep.yaml"
    path.write_text(SWEEP.format(name=name, trials=trials, steps=steps, queue=queue, pruner=pruner))
    return path


def _store(env: Env) -> JobStore:
    return JobStore(env.vars["RNNQ_REDIS_URL"])


def test_sweep_prunes_survives_a_lost_worker_and_names_the_best(fast: Env, queue: str, pool: list[Worker]) -> None:
    path = _sweep_file(fast, queue, "tiny", trials=8, steps=80)
    result: list[Result] = []
    waiter = threading.Thread(target=lambda: result.append(fast.cli("sweep", str(path), "--wait", "--json")))
    waiter.start()
    store = _store(fast)

    # Kill -9 the worker running a trial mid-training; a fresh worker takes its place.
    # Mid-training: by its published checkpoint, which moves with every checkpoint (its
    # progress report reaches the record only every 2 s, a trial's whole run here).
    def running_trial() -> str | None:
        for job_id in sweeps.trials(store, "tiny").values() if store.redis.exists("rnnq:sweep:tiny") else []:
            job = store.get(job_id)
            checkpointed = int(store.redis.hget(f"rnnq:job:{job_id}", "ckpt_last_step") or 0)
            if job.state == "running" and job.worker and 20 <= checkpointed < 70:
                return job_id
        return None

    wait_for(lambda: running_trial() is not None, 120, "a trial past step 20")
    victim_job = running_trial()
    assert victim_job is not None
    running_on = store.get(victim_job).worker or ""
    victim = next(w for w in pool if running_on.split("@")[0] in w.proc.args)  # type: ignore[operator]
    os.killpg(victim.proc.pid, signal.SIGKILL)
    pool.append(start_worker(fast.vars, fast.tmp / "w2.log", queues=queue))

    waiter.join(timeout=240)
    assert result, "sweep --wait did not return"
    assert result[0].exit_code == 0, result[0].output
    board = json.loads(result[0].stdout)
    rows = board["trials"]
    assert board["state"] == "finished" and len(rows) == 8

    # The killed trial was resumed as the same job and the same Optuna trial: no trial lost.
    killed = store.get(victim_job)
    assert killed.worker_losses == 1 and killed.attempts == 2 and killed.state == "succeeded"
    assert killed.trial is not None and killed.trial in {r["trial"] for r in rows}
    assert all(r["state"] in ("succeeded", "pruned") for r in rows), rows
    study = sweeps.load_study(store, "tiny")
    assert len(study.trials) == 8  # never a new trial for a resumed job

    states = {r["trial"]: r["state"] for r in rows}
    pruned = [n for n, s in states.items() if s == "pruned"]
    completed = [n for n, s in states.items() if s == "succeeded"]
    assert pruned and completed, states
    for n in pruned:  # stopped early by the pruner, its best checkpoint kept
        job = store.get(sweeps.trials(store, "tiny")[n])
        assert job.result is not None and job.result["stopped_by"] == "pruned" and job.result["steps"] < 80
        assert "checkpoint" in job.artifacts
    assert {t.number for t in study.trials if t.state.name == "PRUNED"} == set(pruned)

    # `best` is the completed trial with the lowest best validation loss.
    figures = {n: store.get(sweeps.trials(store, "tiny")[n]).result["best_val_loss"] for n in completed}  # type: ignore[index]
    expected = sweeps.trials(store, "tiny")[min(figures, key=figures.__getitem__)]
    best = fast.cli("sweep", "best", "tiny")
    assert best.exit_code == 0 and best.stdout.strip() == expected
    assert rows[0]["job_id"] == expected  # the leaderboard puts it first

    plots = fast.cli("sweep", "plot", "tiny", "-o", str(fast.tmp / "plots"))
    assert plots.exit_code == 0, plots.output
    assert {p.name for p in (fast.tmp / "plots").iterdir()} == {
        "tiny-history.png", "tiny-intermediate.png", "tiny-importances.png"}


def test_cancel_stops_the_rest(fast: Env, queue: str, pool: list[Worker]) -> None:
    path = _sweep_file(fast, queue, "long", trials=6, steps=100_000, pruner="none")
    res = fast.cli("sweep", str(path), "--name", "long", "--parallel", "2")
    assert res.exit_code == 0 and res.stdout.strip() == "long", res.output
    store = _store(fast)
    first = sweeps.trials(store, "long")
    assert len(first) == 2  # parallel: the rest are asked for as trials end
    wait_for(lambda: all(job_step(store, j) >= 10 for j in first.values()), 120, "both trials to train")

    res = fast.cli("sweep", "cancel", "long")
    assert res.exit_code == 0 and "2 trial(s)" in res.stdout, res.output
    wait_for(lambda: sweeps.in_flight(store, "long") == 0, 60, "the trials to stop")
    assert sweeps.record(store, "long")["state"] == "cancelled"
    jobs = sweeps.trials(store, "long")
    assert len(jobs) == 2  # nothing asked after the cancel
    assert {store.get(j).state for j in jobs.values()} == {"cancelled"}
    study = sweeps.load_study(store, "long")
    assert {t.state.name for t in study.trials} == {"PRUNED"}  # cancelled trials keep their reported figures

    status: dict[str, Any] = json.loads(fast.cli("sweep", "status", "long", "--json").stdout)
    assert [r["state"] for r in status["trials"]] == ["cancelled", "cancelled"]
    assert fast.cli("sweep", "best", "long").exit_code == 1  # no completed trial

    exporter, port = start_exporter(fast.vars)
    try:
        samples = scrape(port)
    finally:
        stop(exporter)
    assert total(samples, "rnnq_sweep_trials", sweep="long", state="cancelled") == 2
    assert total(samples, "rnnq_sweep_trials", sweep="long") == 2
