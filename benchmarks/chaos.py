"""Chaos on a multi-host cluster: many jobs, random faults of every kind, then the checker.

Builds the network-namespace cluster of tests/cluster/harness.py (root and `ip`
needed), keeps --jobs training jobs (plus a generate job for every fifth) flowing for
at least --minutes, and injects a random fault every --fault-every seconds: kill -9 of
a worker host, SIGSTOP of a pool process past lease + reap then SIGCONT, a worker
host's link cut and restored, Redis down for longer than a lease, SIGTERM drain while
others idle, and a cancel (of a job of any kind). Prints JSON counts; every failure
count should be 0.

    sudo .venv/bin/python benchmarks/chaos.py --jobs 100 --minutes 10 --faults 30
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cluster.harness import LEASE, MODEL, REAP, WORKERS, CheckpointMonitor, Cluster, available, check
from tests.conftest import make_corpus

FINAL = ("succeeded", "failed", "cancelled")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--faults", type=int, default=30, help="at least this many faults")
    ap.add_argument("--steps", type=int, default=300, help="training steps per job")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    why = available()
    if why:
        sys.exit(f"chaos: the cluster harness {why}")
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="rnnq-chaos-"))
    cluster = Cluster(base).build()
    corpus = base / "corpus.txt"
    corpus.write_text(make_corpus(30_000))
    expect: dict[str, str] = {}
    deleted: set[str] = set()
    faults: Counter[str] = Counter()
    began = time.monotonic()
    deadline = began + args.minutes * 60
    fault_every = args.minutes * 60 / max(1, args.faults + 2)
    submitted, next_fault = 0, began + fault_every
    try:
        with CheckpointMonitor(cluster) as monitor:
            while submitted < args.jobs or time.monotonic() < deadline or sum(faults.values()) < args.faults:
                live = [j for j in expect if cluster.record(j).get("state") not in FINAL]
                more = submitted < args.jobs or sum(faults.values()) < args.faults or time.monotonic() < deadline
                if more and len(live) < 6:  # keep jobs running while faults are still due
                    job = cluster.submit("train", str(corpus), *MODEL, "--max-steps", str(args.steps))
                    expect[job] = "succeeded"
                    submitted += 1
                    if submitted % 10 == 0:  # delete a finished job that a fault touched: it must stay gone
                        touched = [j for j in expect if int(cluster.record(j).get("attempts") or 0) > 1
                                   and cluster.record(j).get("state") in FINAL]
                        if touched and cluster.cli("delete", touched[0]).returncode == 0:
                            deleted.add(touched[0])
                            del expect[touched[0]]
                    if submitted % 5 == 0:
                        done = [j for j, s in expect.items() if s == "succeeded"
                                and cluster.record(j).get("state") == "succeeded"
                                and cluster.record(j).get("kind") == "train"]
                        if done:
                            gen = cluster.submit("generate", done[-1], "--prompt", "The ", "--max-tokens", "3000")
                            expect[gen] = "succeeded"
                if time.monotonic() >= next_fault:
                    kind = _fault(cluster, rng, expect)
                    if kind:
                        faults[kind] += 1
                    next_fault = time.monotonic() + fault_every
                enough = submitted >= args.jobs and sum(faults.values()) >= args.faults
                if enough and time.monotonic() >= deadline and not live:
                    break
                time.sleep(0.5)
            for job in expect:  # let everything finish
                cluster.wait_state(job, FINAL, timeout=900)
        time.sleep(3 * (LEASE + REAP))  # stale copies woken last have had time to try their writes
        report = check(cluster, expect, deleted, monitor)
        states = Counter(cluster.record(j).get("state", "deleted") for j in expect)
        print(json.dumps({
            "submitted": len(expect) + len(deleted),
            "deleted": len(deleted),
            "succeeded": states["succeeded"],
            "cancelled": states["cancelled"],
            "failed": states["failed"],
            "lost": len(report.wrong_state),
            "stuck": len(report.stuck),
            "concurrent_duplicates": len(report.concurrent_duplicates),
            "step_regressions": len(report.step_regressions),
            "stale_writes": len(report.stale_events),
            "checkpoint_mismatches": len(report.checkpoint_mismatches),
            "resurrected_records": len(report.resurrected),
            "retrained_steps": report.retrained_steps,
            "faults": dict(faults),
            "elapsed_s": round(time.monotonic() - began, 1),
            "load_average": os.getloadavg(),
            "details": report.failures(),
        }, indent=1))
    finally:
        cluster.destroy()


def _fault(cluster: Cluster, rng: random.Random, expect: dict[str, str]) -> str | None:
    running = [j for j in expect if cluster.record(j).get("state") == "running"]
    kind = rng.choice(["kill9", "sigstop", "cut", "redis", "drain", "cancel"])
    if kind == "redis":
        cluster.restart_redis(down_for=2 * LEASE + REAP)
        return kind
    if not running:
        return None
    job = rng.choice(running)
    rec = cluster.record(job)
    host = rec.get("host")
    if host not in WORKERS:
        return None
    if kind == "kill9":
        cluster.kill_host(host)
        cluster.start_worker(host)
    elif kind == "sigstop" and rec.get("pid"):
        pid = int(rec["pid"])
        os.kill(pid, signal.SIGSTOP)
        time.sleep(LEASE + 3 * REAP + 1)
        os.kill(pid, signal.SIGCONT)
    elif kind == "cut":
        cluster.cut(host)
        time.sleep(LEASE + 3 * REAP + 1)
        cluster.heal(host)
    elif kind == "drain":
        cluster.stop_worker(host)
        cluster.start_worker(host)
    elif kind == "cancel" and cluster.cli("cancel", job).returncode == 0:
        expect[job] = "cancelled|succeeded"  # the job may have ended before it looked
    return kind


if __name__ == "__main__":
    main()
