"""Soak: many short training jobs, workers killed with SIGKILL over and over.

    python benchmarks/soak.py [--jobs 50] [--workers 2] [--kills 10] [--steps 200]

Starts a private Redis (free port, append-only file on) and --workers worker processes
on one queue, submits --jobs small training jobs, then every --kill-every seconds
SIGKILLs a random worker's whole process group (parent and pool child, like a lost
node) and starts a replacement, until --kills kills are done. Waits for every job to
end and prints one JSON object:

    submitted, succeeded, failed, lost      lost: not in a final state at the deadline
    concurrent_duplicates                   jobs where two attempts' training events
                                            overlap in time (two copies at once)
    resumes                                 attempts that resumed from a checkpoint
    retrained_steps_max                     most steps trained twice after a resume
    kills, worker_losses                    faults injected / losses the jobs counted

Leases are short (2 s) so lost workers are noticed quickly, and the loss cap is raised
(--max-losses) so that a job unlucky enough to be hit three times is not failed by
design. Target: lost 0, concurrent duplicates 0, every job succeeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workers import local, submit
from workers import settings as settings_mod
from workers.app import make_app
from workers.artifacts import LocalArtifactStore
from workers.jobstore import FINAL_STATES, JobStore

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "soak"
MODEL = {"arch": "lstm", "hidden": 32, "embed": 8, "seq_len": 32, "batch_size": 8, "eval_every": 10**6,
         "patience": None, "checkpoint_every": 20}


def corpus(chars: int = 30_000) -> str:
    rng = random.Random(0)
    words = ["the", "queue", "worker", "trains", "a", "model", "on", "text", "and", "samples", "it"]
    return " ".join(rng.choice(words) for _ in range(chars // 4))[:chars]


class Workers:
    """Worker processes on the soak queue, each in its own process group."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs, self.started = env, logs, [], 0

    def spawn(self) -> None:
        self.started += 1
        name = f"soak{self.started}"
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the worker
        argv = [sys.executable, "-m", "cli.main", "worker", "--queues", QUEUE, "--name", name, "--loglevel", "WARNING"]
        self.procs.append(subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def kill_one(self, rng: random.Random) -> None:
        victim = self.procs.pop(rng.randrange(len(self.procs)))
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def overlaps(events: list[dict[str, Any]]) -> bool:
    """Two attempts whose event time ranges overlap: two copies trained at once."""
    spans: dict[int, list[float]] = {}
    for e in events:
        span = spans.setdefault(int(e.get("attempt", 0)), [e["time"], e["time"]])
        span[0], span[1] = min(span[0], e["time"]), max(span[1], e["time"])
    ordered = sorted(spans.values())
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))


def retrained(events: list[dict[str, Any]]) -> int:
    """Most steps trained again after a resume: how far the log went back."""
    worst, high = 0, 0
    for e in events:
        step = int(e["step"])
        worst = max(worst, high - step + 1) if step <= high else worst
        high = max(high, step)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--kill-every", type=float, default=15.0, help="Mean seconds between kills.")
    parser.add_argument("--steps", type=int, default=200, help="Training steps per job.")
    parser.add_argument("--max-losses", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=1800.0, help="Seconds to wait for every job to end.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    home = Path(tempfile.mkdtemp(prefix="rnnq-soak-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = dataclasses.replace(settings_mod.resolve(), home=home, local_port=port, local=True,
                            redis_url=f"redis://127.0.0.1:{port}/0", artifacts=home / "artifacts",
                            lease_seconds=2.0, reap_seconds=0.5, max_worker_losses=args.max_losses)
    env = {**settings_mod.environ(), **settings_mod.export(s), "OMP_NUM_THREADS": "1"}
    local.up(s, worker=False)
    store, app = JobStore(s.redis_url), make_app(s)
    pool = Workers(env, home)
    started = time.monotonic()
    try:
        for _ in range(args.workers):
            pool.spawn()
        spec = submit.build_spec("lm", {**MODEL, "max_steps": args.steps})
        text = corpus()
        artifacts = LocalArtifactStore(s.artifacts)
        ids = [submit.submit_train(store, artifacts, app, spec, {"data": text.encode()}, queue=QUEUE).id for _ in range(args.jobs)]
        kills = 0
        deadline = time.monotonic() + args.deadline
        while time.monotonic() < deadline:
            if all(store.get(i).state in FINAL_STATES for i in ids):
                break
            if kills < args.kills:
                time.sleep(args.kill_every * rng.uniform(0.5, 1.5))
                pool.kill_one(rng)
                kills += 1
                pool.spawn()
            else:
                time.sleep(1.0)
        records = [store.get(i) for i in ids]
        events = {i: [e for _, e in store.events(i)] for i in ids}
    finally:
        pool.stop_all()
        local.down(s)
    states = [r.state for r in records]
    print(json.dumps({
        "benchmark": "soak", "workers": args.workers, "steps_per_job": args.steps,
        "checkpoint_every": MODEL["checkpoint_every"], "elapsed_s": round(time.monotonic() - started, 1),
        "submitted": len(ids), "succeeded": states.count("succeeded"), "failed": states.count("failed"),
        "lost": sum(st not in FINAL_STATES for st in states),
        "concurrent_duplicates": sum(overlaps(ev) for ev in events.values()),
        "resumes": sum(max(r.attempts - 1, 0) for r in records),
        "resumed_jobs": sum(r.resumed_from is not None for r in records),
        "retrained_steps_max": max(retrained(ev) for ev in events.values()),
        "kills": kills, "worker_losses": sum(r.worker_losses for r in records),
        "errors": sorted({r.error for r in records if r.error}),
    }))


if __name__ == "__main__":
    main()
