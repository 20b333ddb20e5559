"""Sweeps through the real queue: real Redis, real worker processes, a real Optuna study."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import Result

from tests.integration.conftest import Env, Worker, scrape, start_exporter, start_worker, stop, total, wait_for
from tests.support import job_step, make_corpus
from workers import sweep as sweeps
from workers.jobstore import JobStore

pytestmark = pytest.mark.integration

FAST = {"RNNQ_LEASE_SECONDS": "2", "RNNQ_REAP_SECONDS": "0.5", "RNNQ_MAX_WORKER_LOSSES": "3",
        "RNNQ_VISIBILITY_TIMEOUT": "3600"}

# A tiny LSTM: a trial of 100 steps trains in well under a second; learning rates far apart so the
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


def _workers(env: Env, queue: str) -> Iterator[list[Worker]]:
    """Two workers on the sweep's queue; a test may append more, all stopped at the end."""
    started: list[Worker] = []
    spawn = [start_worker(env.vars, env.tmp / f"w{i}.log", queues=queue) for i in range(2)]
    started.extend(spawn)
    yield started
    for w in started:
        stop(w.proc)


@pytest.fixture
def pool(fast: Env, queue: str) -> Iterator[list[Worker]]:
    yield from _workers(fast, queue)


@pytest.fixture
def fragile_pool(fast: Env, queue: str) -> Iterator[list[Worker]]:
    """Workers whose reaper fails a job at its first lost worker."""
    fast.vars["RNNQ_MAX_WORKER_LOSSES"] = "1"
    yield from _workers(fast, queue)


ASHA = "{name: asha, min_resource: 10, reduction_factor: 2}"


def _sweep_file(env: Env, queue: str, name: str, trials: int, steps: int, pruner: str = ASHA) -> Path:
    (env.tmp / "corpus.txt").write_text(make_corpus(20_000))
    path = env.tmp / "sweep.yaml"
    path.write_text(SWEEP.format(name=name, trials=trials, steps=steps, queue=queue, pruner=pruner))
    return path


def _store(env: Env) -> JobStore:
    return JobStore(env.vars["RNNQ_REDIS_URL"])


def _kill_worker_of(store: JobStore, job_id: str, pool: list[Worker]) -> None:
    """kill -9 the worker running the job (its whole process group)."""
    running_on = store.get(job_id).worker or ""
    victim = next(w for w in pool if running_on.split("@")[0] in w.proc.args)  # type: ignore[operator]
    os.killpg(victim.proc.pid, signal.SIGKILL)


def _trial_counts(env: Env, name: str) -> dict[str, int]:
    """The sweep's trials by state, as `rnnq sweep list --json` shows them."""
    listed = json.loads(env.cli("sweep", "list", "--json").stdout)
    return next(row["trials"] for row in listed if row["sweep"] == name)


def test_sweep_prunes_survives_a_lost_worker_and_names_the_best(fast: Env, queue: str, pool: list[Worker]) -> None:
    steps = 2500  # a few seconds of training for a trial the pruner keeps
    path = _sweep_file(fast, queue, "tiny", trials=8, steps=steps)
    result: list[Result] = []
    waiter = threading.Thread(target=lambda: result.append(fast.cli("sweep", str(path), "--wait", "--json")))
    waiter.start()
    store = _store(fast)

    # Kill -9 the worker running a trial mid-training; a fresh worker takes its place.
    # Mid-training: by its published checkpoint, which moves at the job's talks with
    # Redis, every 2 s (a pruned trial may end before its first).
    def running_trial() -> str | None:
        for job_id in sweeps.trials(store, "tiny").values() if store.redis.exists("rnnq:sweep:tiny") else []:
            job = store.get(job_id)
            checkpointed = int(store.redis.hget(f"rnnq:job:{job_id}", "ckpt_last_step") or 0)
            if job.state == "running" and job.worker and 20 <= checkpointed < steps * 0.8:
                return job_id
        return None

    wait_for(lambda: running_trial() is not None, 120, "a trial past step 20")
    victim_job = running_trial()
    assert victim_job is not None
    _kill_worker_of(store, victim_job, pool)
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
        assert job.result is not None and job.result["stopped_by"] == "pruned" and job.result["steps"] < steps
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
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in (fast.tmp / "plots").iterdir())

    # The exporter and `sweep list` count the same trials by state.
    exporter, port = start_exporter(fast.vars)
    try:
        samples = scrape(port)
    finally:
        stop(exporter)
    counts = {"succeeded": len(completed), "pruned": len(pruned), "queued": 0, "running": 0, "failed": 0,
              "cancelled": 0}
    for state, n in counts.items():
        assert total(samples, "rnnq_sweep_trials", sweep="tiny", state=state) == n, state
    assert _trial_counts(fast, "tiny") == counts

    # Deleting the finished sweep removes its trials' jobs and artifacts and its study.
    jobs = sweeps.trials(store, "tiny").values()
    artifacts = Path(fast.vars["RNNQ_ARTIFACTS"])
    assert all((artifacts / "jobs" / job_id).is_dir() for job_id in jobs)
    res = fast.cli("sweep", "delete", "tiny")
    assert res.exit_code == 0 and res.stdout.strip() == "deleted sweep tiny: 8 trial job(s), their artifacts and its study"
    _assert_deleted(fast, "tiny", list(jobs))


def test_under_a_time_budget_the_pruner_counts_training_seconds(fast: Env, queue: str, pool: list[Worker]) -> None:
    # Evaluations every half second of training, not by steps; ASHA's rungs in seconds (the default
    # for a time budget alone: steps buy a wide model more training than a narrow one).
    text = SWEEP.format(name="timed", trials=3, steps=1, queue=queue, pruner="asha")
    text = text.replace("eval_every: 10\n", "eval_every: 1000000\n  eval_seconds: 0.5\n")
    path = fast.tmp / "timed.yaml"
    (fast.tmp / "corpus.txt").write_text(make_corpus(20_000))
    path.write_text(text.replace("budget: {max_steps: 1}", "budget: {time_budget: 3}"))
    res = fast.cli("sweep", str(path), "--wait", "--json")
    assert res.exit_code == 0, res.output
    store = _store(fast)
    assert sweeps.record(store, "timed")["config"]["pruner_options"] == {"resource": "seconds", "min_resource": 1}
    study = sweeps.load_study(store, "timed")
    assert len(study.trials) == 3
    for trial in study.trials:
        job = store.get(sweeps.trials(store, "timed")[trial.number])
        assert job.state == "succeeded"
        reported = sorted(trial.intermediate_values)
        assert reported and reported[-1] <= 3, reported  # seconds of a 3 s budget...
        assert (job.result or {})["steps"] > 10 * max(reported[-1], 1)  # ...not the steps a tiny model takes in them


def test_enqueued_points_are_the_first_trials(fast: Env, queue: str, pool: list[Worker]) -> None:
    # `base` is the base job as it stands, its defaults included (lr, not set, is the LM's default);
    # a partial point fixes what it names and the sampler draws the rest.
    text = SWEEP.format(name="seeded", trials=3, steps=20, queue=queue, pruner="none")
    text = text.replace("  embed: 8\n", "  embed: 8\n  hidden: 24\n") + "enqueue: [base, {lr: 0.001}]\n"
    (fast.tmp / "corpus.txt").write_text(make_corpus(20_000))
    path = fast.tmp / "seeded.yaml"
    path.write_text(text)
    res = fast.cli("sweep", str(path), "--wait", "--json")
    assert res.exit_code == 0, res.output
    store = _store(fast)
    base = sweeps.record(store, "seeded")["base"]
    specs = {n: store.get(job_id).spec for n, job_id in sweeps.trials(store, "seeded").items()}
    assert sorted(specs) == [0, 1, 2]
    assert (specs[0]["lr"], specs[0]["hidden"]) == (base["lr"], 24)
    assert specs[1]["lr"] == 0.001 and specs[1]["hidden"] in (8, 24)
    study = sweeps.load_study(store, "seeded")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert study.trials[0].params == {"lr": base["lr"], "hidden": 24}
    assert study.trials[2].params["lr"] not in (base["lr"], 0.001)  # drawn, not enqueued
    rows = json.loads(fast.cli("sweep", "status", "seeded", "--json").stdout)["trials"]
    assert {r["trial"]: r["enqueued"] for r in rows} == {0: True, 1: True, 2: False}


def test_enqueued_points_wait_on_the_leaderboard_until_asked(fast: Env, queue: str) -> None:
    # parallel 1 and no worker: the first point's job waits in the queue, the second point
    # in the study, and the leaderboard shows it as waiting with its values (not as a
    # trial without a job).
    text = SWEEP.format(name="queued", trials=4, steps=20, queue=queue, pruner="none").replace(
        "parallel: 2", "parallel: 1") + "enqueue: [{lr: 0.002, hidden: 8}, {lr: 0.001}]\n"
    (fast.tmp / "corpus.txt").write_text(make_corpus(20_000))
    path = fast.tmp / "queued.yaml"
    path.write_text(text)
    res = fast.cli("sweep", str(path))
    assert res.exit_code == 0, res.output
    rows = json.loads(fast.cli("sweep", "status", "queued", "--json").stdout)["trials"]
    assert [(r["trial"], r["state"], r["params"]) for r in rows] == [
        (0, "queued", {"lr": 0.002, "hidden": 8}), (1, "waiting", {"lr": 0.001})]
    assert rows[1]["job_id"] is None
    assert fast.cli("sweep", "cancel", "queued").exit_code == 0
    rows = json.loads(fast.cli("sweep", "status", "queued", "--json").stdout)["trials"]
    # A cancelled sweep asks no more: the point never asked for is cancelled on the board, and
    # failed in the study, which would otherwise hand it to the next caller of study.ask().
    assert [(r["trial"], r["state"], r["job_id"], r["enqueued"]) for r in rows] == [
        (0, "cancelled", rows[0]["job_id"], True), (1, "cancelled", None, True)]
    study = sweeps.load_study(_store(fast), "queued")
    assert [t.state.name for t in study.trials] == ["PRUNED", "FAIL"]
    assert study.ask().number == 2  # a new point: nothing waits in the study any more
    board = fast.cli("sweep", "status", "queued").output
    assert "(enqueued) lr=0.001" in board, board


def _assert_deleted(env: Env, name: str, jobs: list[str]) -> None:
    store = _store(env)
    assert not any(store.redis.exists(f"rnnq:job:{job_id}") for job_id in jobs)
    assert not any((Path(env.vars["RNNQ_ARTIFACTS"]) / "jobs" / job_id).exists() for job_id in jobs)
    # (A worker whose trial just ended may still be in an advance that finds no sweep:
    # its lock key lives that long, so it is not counted.)
    assert not [key for key in store.redis.keys(f"rnnq:sweep:{name}*") if not str(key).endswith(":lock")]
    with pytest.raises(KeyError):  # the study is gone from Optuna's storage, every entry of its journal with it
        optuna.load_study(study_name=name, storage=sweeps.storage(store.url, {"name": name, "journal": "own"}))
    assert not store.redis.keys(f"rnnq:optuna:sweep:{name}:*")
    assert name not in [row["sweep"] for row in json.loads(env.cli("sweep", "list", "--json").stdout)]
    res = env.cli("sweep", "status", name)
    assert res.exit_code == 1 and f"no sweep '{name}'" in res.output


def test_cancel_stops_the_rest(fast: Env, queue: str, pool: list[Worker]) -> None:
    path = _sweep_file(fast, queue, "long", trials=6, steps=100_000, pruner="none")
    res = fast.cli("sweep", str(path), "--name", "long", "--parallel", "3")
    assert res.exit_code == 0 and res.stdout.strip() == "long", res.output
    store = _store(fast)
    first = sweeps.trials(store, "long")
    assert len(first) == 3  # parallel: the rest are asked for as trials end
    # Two workers: two trials train, the third waits in the queue.
    wait_for(lambda: sorted(job_step(store, j) >= 10 for j in first.values()) == [False, True, True], 120,
             "two trials to train")
    waiting = next(j for j in first.values() if store.get(j).state == "queued")
    assert _trial_counts(fast, "long") == {"queued": 1, "running": 2, "succeeded": 0, "pruned": 0, "failed": 0,
                                           "cancelled": 0}

    res = fast.cli("sweep", "cancel", "long")
    assert res.exit_code == 0 and "3 trial(s)" in res.stdout, res.output
    wait_for(lambda: sweeps.in_flight(store, "long") == 0, 60, "the trials to stop")
    assert sweeps.record(store, "long")["state"] == "cancelled"
    jobs = sweeps.trials(store, "long")
    assert len(jobs) == 3  # nothing asked after the cancel
    assert {store.get(j).state for j in jobs.values()} == {"cancelled"}
    assert store.get(waiting).attempts == 0  # the queued trial never started
    study = sweeps.load_study(store, "long")
    assert {t.state.name for t in study.trials} == {"PRUNED"}  # cancelled trials keep their reported figures

    status: dict[str, Any] = json.loads(fast.cli("sweep", "status", "long", "--json").stdout)
    assert [r["state"] for r in status["trials"]] == ["cancelled", "cancelled", "cancelled"]
    assert fast.cli("sweep", "best", "long").exit_code == 1  # no completed trial

    exporter, port = start_exporter(fast.vars)
    try:
        samples = scrape(port)
    finally:
        stop(exporter)
    assert total(samples, "rnnq_sweep_trials", sweep="long", state="cancelled") == 3
    assert total(samples, "rnnq_sweep_trials", sweep="long") == 3


def test_a_trial_whose_job_fails_or_is_cancelled_is_failed_or_pruned_in_the_study(
        fast: Env, queue: str, fragile_pool: list[Worker]) -> None:
    path = _sweep_file(fast, queue, "frail", trials=2, steps=100_000, pruner="none")
    res = fast.cli("sweep", str(path), "--parallel", "1")
    assert res.exit_code == 0, res.output
    store = _store(fast)
    first = sweeps.trials(store, "frail")[0]
    wait_for(lambda: job_step(store, first) >= 10, 120, "the first trial to train")

    # Its worker dies; with RNNQ_MAX_WORKER_LOSSES=1 the other worker's reaper fails the
    # job, tells the study, and queues the next trial: the sweep goes on without a hand.
    _kill_worker_of(store, first, fragile_pool)
    wait_for(lambda: len(sweeps.trials(store, "frail")) == 2, 60, "the reaper to fail the trial and ask the next")
    assert store.get(first).state == "failed" and "worker lost" in (store.get(first).error or "")
    study = sweeps.load_study(store, "frail")
    assert study.trials[0].state.name == "FAIL"

    # The second trial's job is cancelled by hand (`rnnq cancel`, not the sweep's cancel):
    # the study records it pruned, and the sweep, with every trial asked, is over.
    second = sweeps.trials(store, "frail")[1]
    wait_for(lambda: job_step(store, second) >= 10, 120, "the second trial to train")
    assert fast.cli("cancel", second).exit_code == 0
    wait_for(lambda: sweeps.record(store, "frail")["state"] == "finished", 60, "the sweep to finish")
    assert [t.state.name for t in sweeps.load_study(store, "frail").trials] == ["FAIL", "PRUNED"]
    board = json.loads(fast.cli("sweep", "status", "frail", "--json").stdout)
    assert {r["trial"]: r["state"] for r in board["trials"]} == {0: "failed", 1: "cancelled"}
    assert _trial_counts(fast, "frail") == {"queued": 0, "running": 0, "succeeded": 0, "pruned": 0, "failed": 1,
                                            "cancelled": 1}
    res = fast.cli("sweep", "best", "frail")
    assert res.exit_code == 1 and "no completed trial" in res.output


def test_delete_refuses_running_trials_unless_forced(fast: Env, queue: str, pool: list[Worker]) -> None:
    path = _sweep_file(fast, queue, "busy", trials=4, steps=100_000, pruner="none")
    assert fast.cli("sweep", str(path), "--parallel", "2").exit_code == 0
    store = _store(fast)
    jobs = list(sweeps.trials(store, "busy").values())
    wait_for(lambda: all(job_step(store, j) >= 10 for j in jobs), 120, "both trials to train")

    res = fast.cli("sweep", "delete", "busy")
    assert res.exit_code == 1
    assert "sweep 'busy' has 2 trial(s) queued or running: cancel it first" in res.output, res.output
    assert sweeps.record(store, "busy")["state"] == "running"  # nothing was touched
    assert all(store.get(j).state == "running" for j in jobs)

    res = fast.cli("sweep", "delete", "busy", "--force")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "deleted sweep busy: 2 trial job(s), their artifacts and its study"
    _assert_deleted(fast, "busy", jobs)
    # The workers stopped the trials before they were deleted, and nothing came back:
    # no job, no checkpoint written after the delete.
    wait_for(lambda: not store.running_ids(), 30, "the workers to let go")
    assert fast.job_count() == 0
    assert not any((Path(fast.vars["RNNQ_ARTIFACTS"]) / "jobs" / j).exists() for j in jobs)

    # The name is free again: a new sweep under it starts from trial 0.
    assert fast.cli("sweep", str(path), "--name", "busy", "--parallel", "1").exit_code == 0
    assert list(sweeps.trials(store, "busy")) == [0] and len(sweeps.load_study(store, "busy").trials) == 1
    assert fast.cli("sweep", "cancel", "busy").exit_code == 0


@pytest.mark.parametrize(("edit", "expected"), [  # SWEEP's lines: 4 arch, 13 lr, 14 hidden, 15 trials
    (("  lr: {{low: 0.00003, high: 0.05, log: true}}", "  lr: {{low: 0.05, high: 0.00003}}"),
     "line 13: space.lr: empty range"),
    (("  hidden: [8, 24]", "  hiden: [8, 24]"), "line 14: space.hiden: not a field of a lm spec"),
    (("trials: {trials}", "trials: {trials}\nobjective: bleu"), "line 16: objective: the lm task does not report 'bleu'"),
    (("  arch: lstm", "  arch: lstm\n  arch: gru"), "line 5: base.arch: given twice (first on line 4)"),
])
def test_a_bad_sweep_file_is_one_line_naming_its_line_and_queues_nothing(
        env: Env, queue: str, edit: tuple[str, str], expected: str) -> None:
    env.vars["RNNQ_ARTIFACTS"] = str(env.tmp / "artifacts")  # this test's own, to see that nothing is uploaded
    (env.tmp / "corpus.txt").write_text(make_corpus(20_000))
    path = env.tmp / "sweep.yaml"
    path.write_text(SWEEP.replace(*edit).format(name="bad", trials=4, steps=50, queue=queue, pruner="none"))
    res = env.cli("sweep", str(path))
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith(f"Error: Invalid value for SWEEP_FILE: {expected}"), res.output
    assert env.job_count() == 0 and not env.redis.keys("rnnq:sweep*") and not env.redis.keys("rnnq:optuna*")
    assert not [p for p in (env.tmp / "artifacts").rglob("*") if p.is_file()]  # nothing uploaded


def test_a_submit_that_fails_half_way_leaves_the_name_free(fast: Env, queue: str, tmp_path: Path) -> None:
    # The study's database cannot be opened: one line naming the variable, nothing queued,
    # and the name taken at the start of the submit is given back, so the same file can be
    # submitted again once the database is there.
    path = _sweep_file(fast, queue, "again", 2, 20)
    fast.vars["RNNQ_SWEEP_STORAGE"] = f"sqlite:///{tmp_path}/no/such/dir/study.db"
    res = fast.cli("sweep", str(path))
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("Error: RNNQ_SWEEP_STORAGE: cannot open the sweep database"), res.output
    assert fast.job_count() == 0
    assert json.loads(fast.cli("sweep", "list", "--json").stdout) == []
    fast.vars["RNNQ_SWEEP_STORAGE"] = f"sqlite:///{tmp_path}/study.db"
    res = fast.cli("sweep", str(path))
    assert res.exit_code == 0, res.output
    assert sweeps.record(_store(fast), "again")["state"] == "running"


def test_a_name_left_by_a_submit_that_died_is_freed_by_delete(fast: Env, queue: str) -> None:
    # A submit killed (kill -9) between taking the name and writing the record leaves the name
    # in the index with no record, maybe a study. Submitting that name again says so and how
    # to free it; `sweep delete` frees it (but not while such a submit may still be running).
    store = _store(fast)
    path = _sweep_file(fast, queue, "orphan", 2, 20)
    store.redis.zadd(sweeps.SWEEPS, {"orphan": 0.0})  # taken long ago, never recorded
    optuna.create_study(study_name="orphan", storage=sweeps.storage(store.url, {"name": "orphan", "journal": "own"}))
    res = fast.cli("sweep", str(path))
    assert res.exit_code == 2 and "left half-made by a submit that died" in res.output, res.output
    assert "rnnq sweep delete orphan" in res.output
    # `sweep list` shows the name, so the user finds what holds it.
    listed = json.loads(fast.cli("sweep", "list", "--json").stdout)
    assert [(row["sweep"], row["state"], row["trials_planned"]) for row in listed] == [("orphan", "half-made", 0)]
    assert re.search(r"^orphan +half-made ", fast.cli("sweep", "list").stdout, re.MULTILINE)
    res = fast.cli("sweep", "delete", "orphan")
    assert res.exit_code == 0, res.output
    assert not store.redis.keys(f"{sweeps.OPTUNA_PREFIX}:sweep:orphan:*")  # its study went too
    assert fast.cli("sweep", str(path)).exit_code == 0
    # A name taken a moment ago is a submit still at work: delete leaves it alone.
    taken_at = time.time()
    store.redis.zadd(sweeps.SWEEPS, {"young": taken_at})
    res = fast.cli("sweep", "delete", "young")
    assert res.exit_code == 1 and "no sweep 'young'" in res.output, res.output
    assert store.redis.zscore(sweeps.SWEEPS, "young") == taken_at  # untouched
    listed = {row["sweep"]: row for row in json.loads(fast.cli("sweep", "list", "--json").stdout)}
    assert listed["young"]["state"] == "creating" and listed["young"]["created_at"] == taken_at
    assert listed["orphan"]["state"] == "running"  # submitted again, recorded
