"""One Redis under a fleet of training worker nodes: measured, not multiplied out.

    python benchmarks/redis_fleet.py [--fleet 250 500 1000] [--mode ride each] [--seconds 60]
                                     [--checkpoints-per-min 96] [--evals-per-min 79]

`redis_capacity.py` measures one training node and multiplies its traffic by the fleet;
its two per-request costs (redis-benchmark's, and `INFO cpu` over a lone node) differ by
nine times, because a lone node's requests each wake Redis up. This runs the fleet: it
starts its own redis-server, pinned to CPU 0 (the simulated nodes run pinned to the
other CPUs, so they do not take Redis's core), and for each size W in --fleet and each
--mode, one after the other:

  setup     W training jobs, each created and taken (JobStore.create, JobStore.start) by
            its own node, as W workers would have taken them
  nodes     W simulated nodes, each with its own JobStore (its own connection), sending
            what one training node sends, through rnnq's own code, at the rates of run
            4's training node (README, "How far one Redis goes": --evals-per-min 79, and
            a checkpoint at every evaluation and every 500 steps, --checkpoints-per-min 96):
              ride  every CHECK_SECONDS (2 s) one talk (JobStore.report): the reports
                    since the last, and the pointers of the checkpoints written since
                    (`last` and `best`), in one script. What workers.runner sends now.
              each  every 2 s the reports alone (JobStore.add_events), and one
                    publication per checkpoint (JobStore.publish_checkpoint: the same
                    script with one pointer). What it sent before checkpoints rode on
                    the talk (README run 5 measured it with the publication script of
                    then, since merged into the talk's).
            In both, every RNNQ_REAP_SECONDS the worker's reaper loop (workers.app): its
            heartbeat, the turn, and for the node that takes it the reaper pass and the
            sweeps' advance. Each node starts at a random phase. The exporter's
            collection (workers.exporter.ClusterCollector) runs every 15 s beside them.
  window    after --warmup s, `INFO cpu` (used_cpu_sys + used_cpu_user), commandstats
            and the nodes' own request count over --seconds; how late the nodes ran
            against their schedule (they must keep up for the window to count).

What a simulated node does not send: the lease thread's renewal (the talks renew the
lease, so the thread sends none while a job trains), Celery's messages (a training
worker with prefetch 1 holds its job and sends nothing to the broker until it acks),
and the upload itself (artifacts go to the artifact store, not Redis).

Prints one JSON object: per W and mode, the Redis core share, the requests a second
sent, Redis CPU per request, and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.conftest import free_port, start_redis, stop
from workers import settings as settings_mod
from workers import sweep as sweeps
from workers.exporter import ClusterCollector
from workers.jobstore import Attempt, JobStore
from workers.reconcile import Reaper

PROGRESS_SECONDS = 2.0  # workers.runner writes progress at most this often
SCRAPE_SECONDS = 15.0  # Prometheus's scrape interval in deploy/prometheus


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else 0.0


class Requests:
    """Top-level requests this process sends while counting: every command redis-py sends
    on its own (an EVALSHA is one) and every command inside a pipeline. Redis's
    commandstats cannot tell them apart from the calls a script makes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.on = False
        self.n = 0
        one, many = redis.Redis.execute_command, redis.client.Pipeline._execute_pipeline
        counter = self

        def execute_command(client: Any, *a: Any, **kw: Any) -> Any:
            counter.add(1)
            return one(client, *a, **kw)

        def execute_pipeline(pipe: Any, connection: Any, commands: Any, *a: Any, **kw: Any) -> Any:
            counter.add(len(commands))
            return many(pipe, connection, commands, *a, **kw)

        redis.Redis.execute_command = execute_command  # type: ignore[method-assign]
        redis.client.Pipeline._execute_pipeline = execute_pipeline  # type: ignore[method-assign]

    def add(self, n: int) -> None:
        if self.on:
            with self.lock:
                self.n += n

    def count(self, on: bool) -> int:
        with self.lock:
            self.on, n, self.n = on, self.n, 0
        return n


REQUESTS = Requests()


class Node:
    """One simulated worker node with one training job: its own connection, its own reaper."""

    def __init__(self, url: str, index: int, s: settings_mod.Settings, evals_per_min: float,
                 checkpoints_per_min: float) -> None:
        self.store = JobStore(url)
        self.name = f"gpu0@node{index:05d}"
        self.reaper = Reaper(self.store, s.lease_seconds, s.reap_seconds, s.resend_seconds, s.max_worker_losses,
                             node=self.name)
        job = self.store.create("train", {"kind": "lm", "hidden": 512}, "train")
        attempt = self.store.start(job.id, self.name, uuid.uuid4().hex, s.lease_seconds, s.max_worker_losses)
        assert isinstance(attempt, Attempt), attempt
        self.attempt = attempt
        self.step = 0
        self.evals_per_write = evals_per_min * PROGRESS_SECONDS / 60
        self.owed = 0.0  # evaluations due in the next write (fractions carry over)
        self.checkpoints_per_write = checkpoints_per_min * PROGRESS_SECONDS / 60

    def events(self) -> list[dict[str, Any]]:
        """What a talk carries: the evaluations since the last one and the latest report."""
        self.owed += self.evals_per_write
        events = []
        while self.owed >= 1:
            self.owed -= 1
            self.step += 200
            events.append({"step": self.step, "val_loss": 1.5 + random.random() / 10, "elapsed_s": self.step / 1000})
        self.step += 37
        events.append({"step": self.step, "epoch": self.step / 5000, "train_loss": 1.6, "grad_norm": 0.7,
                       "tokens_per_s": 412_000.0, "elapsed_s": self.step / 1000, "attempt": 1})
        return events

    def talk(self) -> None:
        """The job's talk every CHECK_SECONDS (workers.runner): its reports and, in the
        same script, the pointers of the checkpoints written since the last talk (the
        latest `last`, and a `best` as an improving run writes one)."""
        events = self.events()
        pointers = []
        if self.checkpoints_per_write > 0:
            for name in ("last", "best"):
                pointers.append((name, f"jobs/{self.attempt.job_id}/ckpt/{name}-a1-s{self.step}-0f0f0f.safetensors",
                                 self.step))
        self.store.report(self.attempt, events, pointers)

    def progress(self) -> None:
        """Before: the talk carried only the reports (each checkpoint was published alone)."""
        self.store.add_events(self.attempt, self.events())

    def checkpoint(self) -> None:
        """Before: one publication per checkpoint the loop wrote."""
        self.step += 1
        key = f"jobs/{self.attempt.job_id}/ckpt/last-a1-s{self.step}-0f0f0f.safetensors"
        self.store.publish_checkpoint(self.attempt, "last", key, self.step)

    def period(self) -> None:
        """The worker's reaper loop (workers.app): heartbeat and turn, and the pass if it is ours."""
        if self.reaper.pass_once() is not None:
            sweeps.advance_all(self.store, lambda job_id, kind, queue: None)


class Fleet:
    """W nodes on a few threads, each thread running its nodes' actions from a heap by due time."""

    def __init__(self, nodes: list[Node], threads: int, mode: str, checkpoint_seconds: float, reap_seconds: float,
                 rng: random.Random) -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done: Counter[str] = Counter()  # actions run in the window
        self.late: list[float] = []
        self.errors: Counter[str] = Counter()
        self.counting = False
        every: dict[str, tuple[float, Callable[[Node], None]]] = {"period": (reap_seconds, Node.period)}
        if mode == "ride":
            every["talk"] = (PROGRESS_SECONDS, Node.talk)
        else:
            every["progress"] = (PROGRESS_SECONDS, Node.progress)
            if checkpoint_seconds > 0:
                every["checkpoint"] = (checkpoint_seconds, Node.checkpoint)
        self.every = every
        now = time.monotonic()
        self.heaps: list[list[tuple[float, int, str, Node]]] = [[] for _ in range(threads)]
        seq = 0
        for i, node in enumerate(nodes):
            for what, (period, _) in every.items():
                self.heaps[i % threads].append((now + rng.uniform(0, period), seq, what, node))
                seq += 1
        for heap in self.heaps:
            heapq.heapify(heap)
        self.threads = [threading.Thread(target=self.run, args=(h,), daemon=True) for h in self.heaps]

    def run(self, heap: list[tuple[float, int, str, Node]]) -> None:
        while not self.stop.is_set():
            due, seq, what, node = heap[0]
            wait = due - time.monotonic()
            if wait > 0:
                self.stop.wait(min(wait, 0.5))
                continue
            heapq.heappop(heap)
            period, act = self.every[what]
            try:
                act(node)
            except Exception as exc:  # noqa: BLE001 - counted and reported: a node's error must not stop the fleet
                with self.lock:
                    self.errors[f"{what}: {type(exc).__name__}: {exc}"[:160]] += 1
            with self.lock:
                if self.counting:
                    self.done[what] += 1
                    self.late.append(-wait)
            heapq.heappush(heap, (due + period, seq, what, node))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


class Meter:
    """INFO snapshots of the server, and this process's CPU and load average beside them."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.alone = 0.0  # Redis's CPU seconds a second with no clients (serverCron)

    def snapshot(self) -> dict[str, Any]:
        info = self.r.execute_command("INFO", "cpu", "commandstats", "stats", "clients")
        calls = {k[len("cmdstat_"):]: int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
        return {"t": time.monotonic(), "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                "sys": float(info["used_cpu_sys"]),
                "calls": calls, "clients": int(info["connected_clients"]), "load": load(),
                "self_cpu": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}

    def window(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        calls = {k: b["calls"].get(k, 0) - a["calls"].get(k, 0) for k in set(a["calls"]) | set(b["calls"])}
        calls = {k: v for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v}
        return {"seconds": round(b["t"] - a["t"], 2), "redis_cpu_s": round(b["cpu"] - a["cpu"], 4),
                "redis_cpu_sys_s": round(b["sys"] - a["sys"], 4),
                "commands": sum(calls.values()), "by_command": calls, "clients": b["clients"],
                "nodes_cpu_s": round(b["self_cpu"] - a["self_cpu"], 2), "load_before": a["load"], "load_after": b["load"]}


def exporter(store: JobStore, stop: threading.Event, took: list[float]) -> None:
    collector = ClusterCollector(store)
    while not stop.wait(SCRAPE_SECONDS):
        t = time.perf_counter()
        list(collector.collect())
        took.append(time.perf_counter() - t)


def measure(url: str, meter: Meter, w: int, mode: str, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    meter.r.flushall()
    s = settings_mod.resolve()
    t = time.monotonic()
    nodes = [Node(url, i, s, args.evals_per_min, args.checkpoints_per_min) for i in range(w)]
    setup_s = time.monotonic() - t
    checkpoint_seconds = 60 / args.checkpoints_per_min if args.checkpoints_per_min > 0 else 0.0
    fleet = Fleet(nodes, args.threads, mode, checkpoint_seconds, s.reap_seconds, rng)
    scrape_stop, scrape_took = threading.Event(), []
    scraper = threading.Thread(target=exporter, args=(JobStore(url), scrape_stop, scrape_took), daemon=True)
    fleet.start()
    scraper.start()
    try:
        time.sleep(args.warmup)
        before = meter.snapshot()
        with fleet.lock:
            fleet.counting = True
        REQUESTS.count(True)
        time.sleep(args.seconds)
        requests = REQUESTS.count(False)
        with fleet.lock:
            fleet.counting = False
            done, late = dict(fleet.done), list(fleet.late)
        after = meter.snapshot()
    finally:
        fleet.close()
        scrape_stop.set()
        scraper.join()
    win = meter.window(before, after)
    secs = win["seconds"]
    requests += win["by_command"].get("ping", 0)  # redis-py's connection health checks, sent outside execute_command
    per_min = 60 / PROGRESS_SECONDS + 2 * 60 / s.reap_seconds + (args.checkpoints_per_min if mode == "each" else 0)
    intended = w * per_min / 60
    share = win["redis_cpu_s"] / secs
    for node in nodes:
        node.store.redis.close()
    return {
        "fleet": w,
        "mode": mode,
        "setup_s": round(setup_s, 1),
        "requests_per_s_sent": round(requests / secs, 1),
        "requests_per_s_intended": round(intended, 1),
        "requests_per_node_min": round(60 * requests / secs / w, 1),
        "actions_per_s": {k: round(v / secs, 1) for k, v in done.items()},
        "late_s_p50_p99_max": [round(pct(late, 0.5), 4), round(pct(late, 0.99), 4), round(max(late, default=0), 4)],
        "errors": dict(fleet.errors),
        "exporter_collect_s": [round(x, 3) for x in scrape_took],
        "redis_core_share": round(share, 4),
        "redis_core_share_less_alone": round(share - meter.alone, 4),
        "redis_cpu_us_per_request": round(1e6 * win["redis_cpu_s"] / max(1, requests), 1),
        "window": win,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleet", type=int, nargs="+", default=[250, 500, 1000], help="fleet sizes, one window each")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per fleet size")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--checkpoints-per-min", type=float, default=96.0, help="per node; run 4's training node: 96")
    parser.add_argument("--evals-per-min", type=float, default=79.0, help="per node; run 4's training node: 79")
    parser.add_argument("--mode", nargs="+", choices=("ride", "each"), default=["ride", "each"],
                        help="ride: checkpoints ride on the talk (rnnq now); each: one publication per checkpoint "
                             "(before); one window each, interleaved")
    parser.add_argument("--threads", type=int, default=4, help="threads the simulated nodes share")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cpus = sorted(os.sched_getaffinity(0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * max(args.fleet) + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    began = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="rnnq-fleet-"))
    proc, url = start_redis(home, "--maxclients", str(need), port=free_port())
    pinned = len(cpus) >= 2
    if pinned:  # Redis alone on the first CPU, the simulated nodes on the others
        os.sched_setaffinity(proc.pid, {cpus[0]})
        os.sched_setaffinity(0, set(cpus[1:]))
    os.environ["RNNQ_REDIS_URL"] = url
    meter = Meter(url)
    out: dict[str, Any] = {"benchmark": "redis_fleet", "argv": sys.argv[1:], "cpus": len(cpus), "pinned": pinned,
                           "redis": meter.r.info("server")["redis_version"], "load_start": load()}
    try:
        a = meter.snapshot()
        time.sleep(10)
        alone = meter.window(a, meter.snapshot())
        meter.alone = alone["redis_cpu_s"] / alone["seconds"]
        out["redis_alone_cpu_s_per_s"] = round(meter.alone, 5)
        rng = random.Random(args.seed)
        out["fleets"] = [measure(url, meter, w, mode, args, rng) for w in args.fleet for mode in args.mode]
    finally:
        stop(proc)
        shutil.rmtree(home, ignore_errors=True)
    out["load_end"] = load()
    out["elapsed_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
