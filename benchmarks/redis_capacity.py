"""How far one Redis goes: rnnq's Redis load beside raw Celery's, on one redis-server.

    python benchmarks/redis_capacity.py [--latency-jobs 10] [--jobs 30] [--train-seconds 60]
                                        [--celery-tasks 1000] [--fleet 1000] [--bench-requests 50000]

Starts its own redis-server on a free loopback port and, one phase after another:

  idle          an idle rnnq worker node: Redis commands and CPU per second (BRPOP
                polls, the node's heartbeat and reaper pass)
  latency       --latency-jobs tiny training jobs, one at a time on the idle worker:
                submit-to-start (last_started_at - created_at) p50/p99
  throughput    --jobs tiny jobs submitted at once, waited for: jobs/s end to end, and
                Redis commands and CPU per job (INFO commandstats / INFO cpu diffs)
  training      one training job (--checkpoint-every 500 --eval-every 200) for
                --train-seconds: Redis commands and CPU per training-minute (leases,
                events, heartbeats, reaper passes, checkpoint publication)
  celery        raw Celery (benchmarks/celery_trivial.py, same wire settings) on the
                same Redis: idle rate, send-to-start p50/p99, tasks/s, commands per task
  scrape        one collection of `rnnq exporter` (workers.exporter.ClusterCollector)
                with the jobs above in the store, then with --fleet synthetic running jobs
  reaper        one reaper pass (workers.reconcile.Reaper) with --fleet jobs running:
                one node makes one every RNNQ_REAP_SECONDS for the cluster
  capacity      redis-benchmark against the same server: Redis CPU per request for PING
                and for rnnq's fenced lease renewal (EVALSHA), 1 and 50 clients

Redis CPU is used_cpu_sys + used_cpu_user; the benchmark's own commands (its INFO
snapshots and state polls) are subtracted from the counts. commandstats counts the
commands a Lua script calls as well as the EVALSHA itself. Prints one JSON object, with
os.getloadavg() at the start and end of each phase, and a model: the Redis CPU of a
fleet of --fleet training workers, and the fleet one Redis core serves at 10% and 100%.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import make_corpus
from tests.integration.conftest import free_port, start_redis, start_worker, stop, wait_for
from workers import settings as settings_mod
from workers import submit
from workers.app import make_app
from workers.artifacts import LocalArtifactStore
from workers.exporter import ClusterCollector
from workers.jobstore import _RENEW, FINAL_STATES, JobStore
from workers.reconcile import Reaper

TINY = {"hidden": 8, "embed": 4, "seq_len": 8, "batch_size": 2, "max_steps": 1}
TRAIN = {"hidden": 64, "embed": 16, "seq_len": 32, "batch_size": 8, "max_steps": 10**9, "checkpoint_every": 500,
         "eval_every": 200, "patience": None}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Meter:
    """INFO commandstats + cpu snapshots of one server, and the benchmark's own commands."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.own: Counter[str] = Counter()  # commands this benchmark sent inside a window

    def start(self) -> dict[str, Any]:
        """A snapshot that opens a window: the benchmark's own commands count from here."""
        self.own = Counter()
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        info = self.r.execute_command("INFO", "cpu", "commandstats")
        calls = {k[len("cmdstat_"):]: int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
        return {"t": time.monotonic(), "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                "calls": calls, "load": load()}

    def window(self, before: dict[str, Any]) -> dict[str, Any]:
        """The diff from `before` to now, less this benchmark's own commands."""
        own = self.own + Counter({"info": 1})
        after = self.snapshot()  # the `before` snapshot's INFO is counted after its reply
        diff = {}
        for name in set(after["calls"]) | set(before["calls"]):
            n = after["calls"].get(name, 0) - before["calls"].get(name, 0) - own.get(name, 0)
            if n:
                diff[name] = n
        self.own = Counter()
        return {"seconds": round(after["t"] - before["t"], 2), "cpu_s": round(after["cpu"] - before["cpu"], 4),
                "commands": sum(diff.values()), "by_command": dict(sorted(diff.items(), key=lambda kv: -kv[1])),
                "load_before": before["load"], "load_after": after["load"]}

    def states(self, ids: list[str]) -> list[str | None]:
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(f"rnnq:job:{job_id}", "state")
        self.own["hget"] += len(ids)
        return pipe.execute()

    def wait_states(self, ids: list[str], done: tuple[str, ...], timeout: float, poll: float = 0.2) -> None:
        pending = list(ids)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} jobs not in {done} after {timeout:.0f} s")
            pending = [i for i, s in zip(pending, self.states(pending), strict=True) if s not in done]
            if pending:
                time.sleep(poll)


class Monitor:
    """`redis-cli monitor` while a block runs: the top-level requests clients sent, by
    command (a script's own calls are tagged `lua` and left out), less the benchmark's
    own connections. Run in separate sub-windows: MONITOR costs Redis CPU itself."""

    LINE = re.compile(r'^[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"')

    def __init__(self, port: int, meter: Meter, path: Path) -> None:
        self.port, self.meter, self.path = port, meter, path
        self.requests: Counter[str] = Counter()

    def __enter__(self) -> Monitor:  # noqa: PYI034 - final in practice
        self.out = open(self.path, "wb")
        self.proc = subprocess.Popen([shutil.which("redis-cli") or "redis-cli", "-p", str(self.port), "monitor"],
                                     stdout=self.out, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self.proc.terminate()
        self.proc.wait()
        self.out.close()
        mine = set()
        for conn in [*self.meter.r.connection_pool._available_connections,
                     *self.meter.r.connection_pool._in_use_connections]:
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                host, port = sock.getsockname()[:2]
                mine.add(f"{host}:{port}")
        for line in self.path.read_text(errors="replace").splitlines():
            m = self.LINE.match(line)
            if m and m.group(1) != "lua" and m.group(1) not in mine:
                self.requests[m.group(2).lower()] += 1


BASELINE: dict[str, float] = {"cpu_s_per_s": 0.0}  # Redis with no clients (serverCron): set in main


def per(window: dict[str, Any], n: float, idle: dict[str, Any] | None = None) -> dict[str, Any]:
    """A window's commands and Redis CPU per unit (job, task, minute): the CPU less what
    Redis spends with no clients at all over the same time; and, given `idle`, less the
    idle background of the same workers too."""
    base = BASELINE["cpu_s_per_s"] * window["seconds"]
    out: dict[str, Any] = {"commands": round(window["commands"] / n, 1),
                           "cpu_ms": round(1000 * max(0.0, window["cpu_s"] - base) / n, 3)}
    if idle is not None:
        secs = window["seconds"]
        out["commands_less_idle"] = round((window["commands"] - idle["commands_per_s"] * secs) / n, 1)
        out["cpu_ms_less_idle"] = round(1000 * max(0.0, window["cpu_s"] - idle["cpu_s_per_s"] * secs) / n, 3)
    return out


def idle_rate(meter: Meter, seconds: float) -> dict[str, Any]:
    before = meter.start()
    time.sleep(seconds)
    w = meter.window(before)
    w["commands_per_s"] = round(w["commands"] / w["seconds"], 2)
    w["cpu_s_per_s"] = round(w["cpu_s"] / w["seconds"], 6)
    return w


def rnnq_phases(args: argparse.Namespace, url: str, port: int, home: Path, meter: Meter, out: dict[str, Any]) -> str:
    """idle, latency, throughput, training; returns the training job's id."""
    env = {"RNNQ_REDIS_URL": url, "RNNQ_ARTIFACTS": str(home / "artifacts"), "RNNQ_HOME": str(home / "worker"),
           "OMP_NUM_THREADS": "1"}
    os.environ.update(env)
    s = settings_mod.resolve()
    store, app, artifacts = JobStore(url), make_app(s), LocalArtifactStore(s.artifacts)
    text = make_corpus(20_000)
    tiny = submit.build_spec("lm", TINY)

    def send(spec: Any) -> str:
        return submit.submit_train(store, artifacts, app, spec, {"data": text.encode()}, queue="train").id

    worker = start_worker(env, home / "rnnq-worker.log", queues="train",
                          argv=[sys.executable, "-m", "cli.main", "worker", "--queues", "train", "--name",
                                f"bench-{uuid.uuid4().hex[:6]}", "--loglevel", "INFO"])
    try:
        warm = send(tiny)  # the pool process's first job imports torch: not measured
        meter.wait_states([warm], FINAL_STATES, 300)
        out["rnnq_idle"] = idle_rate(meter, args.idle_seconds)

        started = load()
        lat = []
        for _ in range(args.latency_jobs):
            job_id = send(tiny)
            meter.wait_states([job_id], FINAL_STATES, 300)
            job = store.get(job_id)
            assert job.state == "succeeded", (job_id, job.state, job.error)
            started_at = float(meter.r.hget(f"rnnq:job:{job_id}", "last_started_at") or "nan")
            lat.append(1000 * (started_at - job.created_at))
            time.sleep(0.3)  # the worker is idle again (BRPOP waiting) before the next submit
        out["rnnq_latency"] = {"jobs": len(lat), "submit_to_start_ms_p50": round(pct(lat, 0.5), 1),
                               "submit_to_start_ms_p99": round(pct(lat, 0.99), 1),
                               "min_ms": round(min(lat), 1), "max_ms": round(max(lat), 1),
                               "load_before": started, "load_after": load()}

        before = meter.start()
        ids = [send(tiny) for _ in range(args.jobs)]
        meter.wait_states(ids, FINAL_STATES, 30 * args.jobs + 120, poll=0.5)
        w = meter.window(before)
        jobs = [store.get(i) for i in ids]
        bad = [j.state for j in jobs if j.state != "succeeded"]
        assert not bad, bad
        span = max(float(j.finished_at or 0) for j in jobs) - min(j.created_at for j in jobs)
        out["rnnq_throughput"] = {"jobs": len(ids), "jobs_per_s": round(len(ids) / span, 2),
                                  "per_job": per(w, len(ids), out["rnnq_idle"]), "window": w}
        k = max(1, min(5, args.jobs))
        with Monitor(port, meter, home / "monitor-jobs.txt") as mon:
            more = [send(tiny) for _ in range(k)]
            meter.wait_states(more, FINAL_STATES, 30 * k + 120, poll=0.5)
        out["rnnq_throughput"]["requests_per_job"] = requests(mon, k)

        # One training job for a while: what a busy GPU worker node costs Redis.
        job_id = send(submit.build_spec("lm", TRAIN))
        meter.wait_states([job_id], ("running", *FINAL_STATES), 300)
        time.sleep(3)  # past the job's start (data preparation writes, model build)
        r = meter.r
        step0 = int(json.loads(r.hget(f"rnnq:job:{job_id}", "progress") or '{"step": 0}').get("step", 0))
        before = meter.start()
        time.sleep(args.train_seconds)
        progress = r.hget(f"rnnq:job:{job_id}", "progress")
        meter.own["hget"] += 2
        w = meter.window(before)
        step1 = int(json.loads(progress or '{"step": 0}').get("step", 0))
        minutes = w["seconds"] / 60
        out["rnnq_training"] = {"steps_per_s": round((step1 - step0) / w["seconds"], 1),
                                "checkpoints_in_window": (step1 // 500) - (step0 // 500),
                                "evaluations_in_window": (step1 // 200) - (step0 // 200),
                                "per_minute": per(w, minutes), "window": w}
        out["_progress_sample"] = progress
        with Monitor(port, meter, home / "monitor-train.txt") as mon:
            time.sleep(args.monitor_seconds)
        out["rnnq_training"]["requests_per_minute"] = requests(mon, args.monitor_seconds / 60)
        store.cancel(job_id)
        meter.wait_states([job_id], FINAL_STATES, 120)
    finally:
        stop(worker.proc)
    return job_id


def celery_phases(args: argparse.Namespace, url: str, port: int, home: Path, meter: Meter,
                  out: dict[str, Any]) -> None:
    env = {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    os.environ["BENCH_REDIS_URL"] = url
    from benchmarks import celery_trivial

    argv = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_trivial", "worker", "-Q", "trivial", "-c", "1",
            "-n", f"trivial-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "-P", "prefork"]
    log = home / "celery-worker.log"
    worker = start_worker(env, log, argv=argv)
    r = meter.r
    try:
        out["celery_idle"] = idle_rate(meter, args.idle_seconds)
        started = load()
        lat = []
        for i in range(args.latency_jobs * 3):
            tag = f"lat{i}"
            sent = time.time()
            celery_trivial.noop.apply_async(args=[tag])
            deadline = time.monotonic() + 60
            while True:
                got = cast(list[str], r.lrange(celery_trivial.STARTED, 0, -1))
                hit = [g for g in got if g.startswith(tag + " ")]
                if hit:
                    lat.append(1000 * (float(hit[0].split()[1]) - sent))
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(tag)
                time.sleep(0.005)
            time.sleep(0.3)
        r.delete(celery_trivial.STARTED)
        out["celery_latency"] = {"tasks": len(lat), "send_to_start_ms_p50": round(pct(lat, 0.5), 1),
                                 "send_to_start_ms_p99": round(pct(lat, 0.99), 1), "min_ms": round(min(lat), 1),
                                 "max_ms": round(max(lat), 1), "load_before": started, "load_after": load()}

        n = args.celery_tasks
        before = meter.start()
        first = time.time()
        for i in range(n):
            celery_trivial.noop.apply_async(args=[f"t{i}"])
        deadline = time.monotonic() + 600
        polls = 0
        while r.llen(celery_trivial.STARTED) < n:
            polls += 1
            if time.monotonic() > deadline:
                raise TimeoutError("celery throughput")
            time.sleep(0.2)
        meter.own["llen"] += polls + 1
        while r.hlen("unacked"):  # the last ack
            meter.own["hlen"] += 1
            time.sleep(0.05)
        meter.own["hlen"] += 1
        w = meter.window(before)
        starts = [float(x.split()[1]) for x in r.lrange(celery_trivial.STARTED, 0, -1)]
        # the task's own RPUSH is the benchmark's probe, not Celery's cost
        w["by_command"]["rpush"] = w["by_command"].get("rpush", 0) - n
        w["commands"] -= n
        out["celery_throughput"] = {"tasks": n, "tasks_per_s": round(n / (max(starts) - first), 1),
                                    "per_task": per(w, n, out["celery_idle"]), "window": w}
        r.delete(celery_trivial.STARTED)
        k = 100
        with Monitor(port, meter, home / "monitor-celery.txt") as mon:
            for i in range(k):
                celery_trivial.noop.apply_async(args=[f"m{i}"])
            while r.llen(celery_trivial.STARTED) < k:
                time.sleep(0.1)
            wait_for(lambda: r.hlen("unacked") == 0, 30, "the last ack")
        mon.requests["rpush"] -= k  # the task's probe
        out["celery_throughput"]["requests_per_task"] = requests(mon, k)
        r.delete(celery_trivial.STARTED)
    finally:
        stop(worker.proc)


def requests(mon: Monitor, n: float) -> dict[str, Any]:
    total = sum(mon.requests.values())
    return {"total": round(total / n, 2),
            "by_command": {k: round(v / n, 2) for k, v in sorted(mon.requests.items(), key=lambda kv: -kv[1]) if v}}


def scrape(meter: Meter, store: JobStore) -> dict[str, Any]:
    collector = ClusterCollector(store)
    before = meter.start()
    t = time.perf_counter()
    families = list(collector.collect())
    took = time.perf_counter() - t
    w = meter.window(before)
    jobs = int(meter.r.zcard("rnnq:jobs"))
    running = int(meter.r.scard("rnnq:running"))
    return {"jobs_in_store": jobs, "running": running, "families": len(families),
            "collect_s": round(took, 3), "window": w}


def fake_fleet(meter: Meter, n: int, progress: str | None) -> list[str]:
    """n synthetic running jobs with live leases, as n training workers would leave them."""
    r = meter.r
    ids = [f"fake{i:06d}" for i in range(n)]
    pipe = r.pipeline(transaction=False)
    now = time.time()
    for i, job_id in enumerate(ids):
        pipe.hset(f"rnnq:job:{job_id}", mapping={
            "id": job_id, "kind": "train", "state": "running", "queue": "train", "name": "",
            "worker": f"gpu{i}@node{i}", "created_at": repr(now), "last_started_at": repr(now),
            "lease_token": "tok", "progress": progress or '{"step": 1}', "val_loss": "1.5"})
        pipe.set(f"rnnq:lease:{job_id}", "tok", px=600_000)
        pipe.zadd("rnnq:deadlines", {job_id: int(now * 1000) + 600_000})  # as the fenced scripts keep it
        pipe.sadd("rnnq:running", job_id)
        pipe.zadd("rnnq:jobs", {job_id: now})
        pipe.set(f"rnnq:worker:gpu{i}@node{i}", repr(now), px=600_000)
    pipe.execute()
    return ids


def reaper_pass(meter: Meter, store: JobStore) -> dict[str, Any]:
    # Short lease and period: the pass skips reaping until Redis has been up for both.
    reaper = Reaper(store, lease_seconds=1, reap_seconds=1, resend_seconds=60, max_losses=3)
    meter.r.delete("rnnq:turn:reaper")  # this pass is the period's, whoever made the last
    before = meter.start()
    t = time.perf_counter()
    made = reaper.pass_once()
    took = time.perf_counter() - t
    assert made is not None
    reaped, unsent = made
    w = meter.window(before)
    return {"running": int(meter.r.scard("rnnq:running")), "reaped": len(reaped), "unsent": len(unsent),
            "pass_s": round(took, 3), "window": w}


def redis_benchmark(meter: Meter, port: int, requests: int) -> dict[str, Any]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {"skipped": "redis-benchmark not on PATH (apt-get install redis-tools)"}
    r = meter.r
    r.hset("bench:job", mapping={"id": "bench", "state": "running", "lease_token": "tok"})
    sha = r.script_load(_RENEW)
    renew = ["EVALSHA", sha, "4", "bench:job", "bench:lease", "bench:deadlines", "bench:drain", "tok", "30000"]
    cases = {"ping_c1": (1, ["PING"]), "ping_c50": (50, ["PING"]), "renew_evalsha_c1": (1, renew),
             "renew_evalsha_c50": (50, renew)}
    out: dict[str, Any] = {}
    for name, (clients, command) in cases.items():
        n = requests if clients > 1 else max(1000, requests // 5)
        before = meter.start()
        done = subprocess.run([binary, "-h", "127.0.0.1", "-p", str(port), "-n", str(n), "-c", str(clients), "-q",
                               *command], capture_output=True, text=True, check=True)
        w = meter.window(before)
        top = w["by_command"].get(command[0].lower(), 0)
        rates = re.findall(r"([\d.]+) requests per second", done.stdout)
        out[name] = {"clients": clients, "requests": n, "redis_cpu_s": w["cpu_s"],
                     "redis_cpu_us_per_request": round(1e6 * w["cpu_s"] / max(1, top), 2),
                     "requests_per_redis_core_s": round(top / w["cpu_s"]) if w["cpu_s"] > 0 else None,
                     "wall_requests_per_s": float(rates[-1]) if rates else None,
                     "commands_counted": w["commands"], "load_before": w["load_before"], "load_after": w["load_after"]}
    return out


def request_cost(out: dict[str, Any], by_command: dict[str, float]) -> float:
    """Redis core-seconds for these top-level requests, at the costs redis-benchmark
    measured with one client (each request its own wake-up, as with many quiet clients):
    an EVALSHA like the fenced lease renewal, anything else like PING."""
    cap = out["capacity"]
    script, plain = cap["renew_evalsha_c1"]["redis_cpu_us_per_request"], cap["ping_c1"]["redis_cpu_us_per_request"]
    return sum(n * (script if name in ("evalsha", "eval") else plain) for name, n in by_command.items()) / 1e6


def model(out: dict[str, Any], fleet: int, reap_seconds: float = 10.0, scrape_seconds: float = 15.0) -> dict[str, Any]:
    """Redis CPU of `fleet` training workers, each a node with one GPU and one job, from
    the measured parts; and the fleet one core serves at 10% and 100%. One reaper pass
    per period for the whole cluster (workers.reconcile). The training node's measured
    traffic includes that pass (the benchmark's one node takes every period's turn), so
    multiplying it by the fleet overstates the nodes that do not take it."""
    training = out["rnnq_training"]
    node_req = training["requests_per_minute"]["by_command"]
    node = request_cost(out, node_req) / 60  # core-seconds per second of one training node
    node_measured = training["per_minute"]["cpu_ms"] / 60_000  # the same, from INFO cpu at this low rate
    small, big = out["reaper_pass_small"], out["reaper_pass_fleet"]
    # a reaper pass costs a + b * running jobs (b: what grows with them, if anything)
    b = max(0.0, (big["window"]["cpu_s"] - small["window"]["cpu_s"]) / max(1, big["running"] - small["running"]))
    a = max(0.0, small["window"]["cpu_s"])
    scrape_per_job = out["scrape_fleet"]["window"]["cpu_s"] / max(1, out["scrape_fleet"]["running"])

    def total(w: int, node_cost: float = node) -> dict[str, float]:
        parts = {"node_traffic": w * node_cost,  # progress events, leases, checkpoints, heartbeats
                 "reaper": (a + b * w) / reap_seconds,  # one pass per period for the cluster
                 "exporter": scrape_per_job * w / scrape_seconds}
        parts["total"] = sum(parts.values())
        return parts

    def largest(share: float, **kw: Any) -> int:
        lo, hi = 1, 10**7
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if total(mid, **kw)["total"] <= share:
                lo = mid
            else:
                hi = mid - 1
        return lo

    at = total(fleet)
    tiny = request_cost(out, out["rnnq_throughput"]["requests_per_job"]["by_command"])
    task = request_cost(out, out["celery_throughput"]["requests_per_task"]["by_command"])
    return {
        "fleet": fleet,
        "core_share_at_fleet": {k: round(v, 4) for k, v in at.items()},
        "core_share_at_fleet_from_info_cpu": {k: round(v, 4) for k, v in total(fleet, node_measured).items()},
        "target_met": at["total"] < 0.10,
        "workers_at_10pct_core": largest(0.10),
        "workers_at_100pct_core": largest(1.0),
        "workers_at_10pct_core_from_info_cpu": largest(0.10, node_cost=node_measured),
        "node_requests_per_s": round(sum(node_req.values()) / 60, 2),
        "node_core_ms_per_s": {"from_requests": round(1000 * node, 4), "from_info_cpu": round(1000 * node_measured, 4)},
        "reaper_pass_core_s": {"fixed": round(a, 6), "per_running_job": round(b, 8)},
        "scrape_core_s_per_running_job": round(scrape_per_job, 8),
        "tiny_job_core_ms": {"from_requests": round(1000 * tiny, 4),
                             "from_info_cpu": out["rnnq_throughput"]["per_job"]["cpu_ms_less_idle"]},
        "tiny_jobs_per_s_per_core": round(1 / tiny, 1) if tiny > 0 else None,
        "celery_task_core_ms": {"from_requests": round(1000 * task, 4),
                                "from_info_cpu": out["celery_throughput"]["per_task"]["cpu_ms_less_idle"]},
        "celery_tasks_per_s_per_core": round(1 / task, 1) if task > 0 else None,
        "assumptions": f"one training job per worker node; one reaper pass every {reap_seconds:g} s for the "
                       f"cluster; one exporter scrape every {scrape_seconds:g} s; request costs from "
                       "redis-benchmark with one client (EVALSHA: the lease renewal script)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-jobs", type=int, default=10, help="tiny jobs timed one at a time (x3 Celery tasks)")
    parser.add_argument("--jobs", type=int, default=30, help="tiny jobs submitted at once")
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--monitor-seconds", type=float, default=15.0,
                        help="MONITOR sub-window of the training job (top-level requests)")
    parser.add_argument("--celery-tasks", type=int, default=1000)
    parser.add_argument("--fleet", type=int, default=1000, help="synthetic running jobs for the scrape and reaper")
    parser.add_argument("--bench-requests", type=int, default=50_000)
    args = parser.parse_args()

    began = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="rnnq-rcap-"))
    port = free_port()
    (home / "redis").mkdir()
    proc, url = start_redis(home / "redis", port=port)
    out: dict[str, Any] = {"benchmark": "redis_capacity", "argv": sys.argv[1:], "load_start": load(),
                           "cpus": os.cpu_count(), "redis": redis.Redis.from_url(url).info("server")["redis_version"]}
    meter = Meter(url)
    try:
        out["redis_alone"] = idle_rate(meter, args.idle_seconds)
        BASELINE["cpu_s_per_s"] = out["redis_alone"]["cpu_s_per_s"]
        rnnq_phases(args, url, port, home, meter, out)
        progress = out.pop("_progress_sample", None)
        celery_phases(args, url, port, home, meter, out)
        store = JobStore(url)
        out["scrape"] = scrape(meter, store)
        out["reaper_pass_small"] = reaper_pass(meter, store)
        fake_fleet(meter, args.fleet, progress)
        out["reaper_pass_fleet"] = reaper_pass(meter, store)
        out["scrape_fleet"] = scrape(meter, store)
        out["capacity"] = redis_benchmark(meter, port, args.bench_requests)
        out["model"] = model(out, args.fleet)
    finally:
        stop(proc)
        shutil.rmtree(home, ignore_errors=True)
    out["load_end"] = load()
    out["elapsed_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
