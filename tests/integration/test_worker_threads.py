"""A worker's pool processes share the node's cores: `rnnq worker --concurrency N` gives
each job its share of them for torch's intra-op threads (rnn_tasks.device), so N CPU
jobs side by side do not oversubscribe the node. A training result says how many
threads it used."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rnn_tasks.device import choose_threads, usable_cores
from tests.integration.conftest import Env, Worker, start_worker, stop
from tests.integration.test_kinds import run
from tests.support import phrase_corpus

pytestmark = pytest.mark.integration

# The default GRU 1x512 (~0.9M parameters: three threads' worth, see PARAMS_PER_THREAD)
# for one step on a tiny batch: it would take every core a node has, up to three.
LARGE = ["--hidden", "512", "--seq-len", "16", "--batch-size", "4", "--max-steps", "1", "--eval-every", "1000"]


def test_a_pool_of_two_gives_each_job_half_the_cores(env: Env, worker: Worker) -> None:
    cores = usable_cores()
    if cores < 2:
        pytest.skip("halving needs at least 2 usable cores")
    corpus = env.tmp / "corpus.txt"
    corpus.write_text(phrase_corpus(20_000))

    alone = run(env, "train", str(corpus), *LARGE)  # the module's worker: --concurrency 1
    assert alone["state"] == "succeeded"
    assert alone["threads"] == choose_threads(alone["parameters"], cores) >= 2

    pool = start_worker(env.vars, env.tmp / "pool.log", queues="pool-of-two", concurrency=2)
    try:
        shared = run(env, "train", str(corpus), *LARGE, "--queue", "pool-of-two")
    finally:
        stop(pool.proc)
    assert shared["state"] == "succeeded" and shared["parameters"] == alone["parameters"]
    assert shared["threads"] == choose_threads(shared["parameters"], cores // 2)
    assert shared["threads"] == max(1, alone["threads"] // 2)


def test_with_gpus_each_gpu_process_takes_its_share_of_the_cpu_cores(env: Env) -> None:
    # One pool process per GPU: their host-side threads share the node's CPU cores too.
    # Checked on what the exec'd Celery parent (and so each pool process) resolves.
    gpus = start_worker(env.vars, env.tmp / "gpus.log", argv=[
        sys.executable, "-m", "cli.main", "worker", "--gpus", "0,1", "--queues", "no-jobs-here"])
    try:
        environ = Path(f"/proc/{gpus.proc.pid}/environ").read_bytes().split(b"\0")
    finally:
        stop(gpus.proc)
    assert b"RNNQ_WORKER_PROCESSES=2" in environ and b"RNNQ_WORKER_GPUS=0,1" in environ
