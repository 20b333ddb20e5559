"""A small rnnq cluster on one Linux machine, built from network namespaces.

    root namespace: bridge rq<tag>br 198.18.0.1/24 (the test process reads Redis here)
        |-- veth --> netns rnnq-<tag>-redis   198.18.0.10  redis-server, AOF, a password
        |-- veth --> netns rnnq-<tag>-w1      198.18.0.11  rnnq worker (1 pool process)
        |-- veth --> netns rnnq-<tag>-w2      198.18.0.12  rnnq worker
        |-- veth --> netns rnnq-<tag>-w3      198.18.0.13  rnnq worker
        `-- veth --> netns rnnq-<tag>-client  198.18.0.20  the CLI

Each host's link is its veth's root-side end, so `cut(host)` is one `ip link set down`
that leaves the host's processes running but unreachable (a partition). The artifact
directory is shared by path, as an NFS mount would be. Needs root and `ip`.

Used by tests/cluster (faults in loops, then `check`) and benchmarks/chaos.py.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import redis

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "198.18.0"
PASSWORD = "cluster-test-secret"
REDIS_IP = f"{SUBNET}.10"
HOST_IPS = {"redis": REDIS_IP, "w1": f"{SUBNET}.11", "w2": f"{SUBNET}.12", "w3": f"{SUBNET}.13",
            "client": f"{SUBNET}.20"}
WORKERS = ("w1", "w2", "w3")
# Short leases so that faults are noticed in seconds. LEASE + REAP is how long a paused
# or cut-off worker keeps its job before another may take it.
LEASE, REAP = 3.0, 1.0
FAST = {"RNNQ_LEASE_SECONDS": str(LEASE), "RNNQ_REAP_SECONDS": str(REAP), "RNNQ_RESEND_SECONDS": "5",
        "RNNQ_MAX_WORKER_LOSSES": "50", "RNNQ_CLI_RETRY_SECONDS": "120"}
# A tiny LSTM: a few hundred steps take seconds on a loaded 2-core machine.
MODEL = ["--arch", "lstm", "--hidden", "32", "--embed", "8", "--seq-len", "16", "--batch-size", "4",
         "--eval-every", "50", "--patience", "1000", "--checkpoint-every", "20", "--seed", "1"]


def available() -> str | None:
    """Why the harness cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    return None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        from workers.local import redis_binary as bundled

        path = bundled()
    return path


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    link: str  # root-side veth: down = this host is cut off
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


S3_PORT = 9000
S3_BUCKET = "rnnq-cluster"


@dataclass
class Cluster:
    base: Path
    s3: bool = False  # artifacts on an S3 server (moto) on the Redis host, no shared path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:4])
    hosts: dict[str, Host] = field(default_factory=dict)
    bridge: str = ""
    artifacts: Path = Path()
    env: dict[str, str] = field(default_factory=dict)

    # ---- building and tearing down

    def build(self) -> Cluster:
        self.bridge = f"rq{self.tag}br"
        self.artifacts = self.base / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, (name, ip) in enumerate(HOST_IPS.items()):
            ns, link = f"rnnq-{self.tag}-{name}", f"rq{self.tag}h{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", link, "master", self.bridge)
            sh("ip", "link", "set", link, "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            home = self.base / name
            home.mkdir(exist_ok=True)
            self.hosts[name] = Host(name, ns, ip, link, home)
        self.env = {
            **FAST,
            "RNNQ_REDIS_URL": f"redis://:{PASSWORD}@{REDIS_IP}:6379/0",
            "RNNQ_ARTIFACTS": str(self.artifacts),
            "PYTHONPATH": str(ROOT),
        }
        self.start_redis()
        if self.s3:
            self.start_s3()
        for name in WORKERS:
            self.start_worker(name)
        return self

    def destroy(self) -> None:
        for host in self.hosts.values():
            self.kill_host(host.name)
        for host in self.hosts.values():
            sh("ip", "netns", "del", host.ns, check=False)
            sh("ip", "link", "del", host.link, check=False)
        sh("ip", "link", "del", self.bridge, check=False)

    # ---- processes

    def _spawn(self, host: Host, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(["ip", "netns", "exec", host.ns, *argv], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, env={**os.environ, **env}, start_new_session=True)

    def start_redis(self) -> None:
        host = self.hosts["redis"]
        host.log = host.home / "redis.log"
        argv = [redis_binary(), "--bind", REDIS_IP, "--port", "6379", "--requirepass", PASSWORD,
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", str(host.home)]
        host.proc = self._spawn(host, argv, {}, host.log)
        wait_for(self.redis_up, 60, "redis-server in its namespace")

    def start_s3(self) -> None:
        """moto's S3 server on the Redis host; every host reaches artifacts only there."""
        host = self.hosts["redis"]
        argv = [sys.executable, "-m", "moto.server", "-H", REDIS_IP, "-p", str(S3_PORT)]
        self._spawn(host, argv, {}, host.home / "s3.log")
        self.env.update({
            "RNNQ_ARTIFACTS": f"s3://{S3_BUCKET}/cluster",
            "AWS_ENDPOINT_URL": f"http://{REDIS_IP}:{S3_PORT}",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
        })

        def bucket() -> bool:
            try:
                self.s3_client().create_bucket(Bucket=S3_BUCKET)
                return True
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_for(bucket, 60, "the S3 server")

    def s3_client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=f"http://{REDIS_IP}:{S3_PORT}", region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def artifact_files(self, prefix: str) -> list[str]:
        """Artifact keys under a prefix (a job's folder), wherever the store is."""
        if not self.s3:
            root = self.artifacts / prefix
            return [str(p.relative_to(self.artifacts)) for p in root.rglob("*") if p.is_file()]
        listing = self.s3_client().list_objects_v2(Bucket=S3_BUCKET, Prefix=f"cluster/{prefix}/")
        return [o["Key"].removeprefix("cluster/") for o in listing.get("Contents", [])]

    def fetch_artifact(self, key: str, dest: Path) -> Path | None:
        """A local copy of an artifact, or None if it is not there."""
        if not self.s3:
            return self.artifacts / key if (self.artifacts / key).is_file() else None
        try:
            self.s3_client().download_file(S3_BUCKET, f"cluster/{key}", str(dest))
        except Exception:  # noqa: BLE001 - missing
            return None
        return dest

    def redis_up(self) -> bool:
        try:
            return bool(self.redis().ping())
        except redis.RedisError:
            return False

    def redis(self) -> redis.Redis:
        return redis.Redis(host=REDIS_IP, port=6379, password=PASSWORD, decode_responses=True,
                           socket_connect_timeout=2, socket_timeout=10)

    def start_worker(self, name: str) -> None:
        host = self.hosts[name]
        host.log = host.home / "worker.log"
        start = host.log.stat().st_size if host.log.exists() else 0
        env = {**self.env, "RNNQ_HOME": str(host.home)}
        argv = [sys.executable, "-m", "cli.main", "worker", "--queues", "train,generate", "--name", name,
                "--concurrency", "1"]
        host.proc = self._spawn(host, argv, env, host.log)
        log = host.log
        wait_for(lambda: b" ready." in log.read_bytes()[start:] or host.proc.poll() is not None,  # type: ignore[union-attr]
                 90, f"worker {name}")
        if host.proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited:\n{host.log.read_text()[-3000:]}")

    def pids(self, name: str) -> list[int]:
        """Every process in the host's namespace."""
        out = sh("ip", "netns", "pids", self.hosts[name].ns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_host(self, name: str) -> None:
        """kill -9 of every process on the host (a lost node)."""
        host = self.hosts[name]
        for pid in self.pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if host.proc is not None:
            host.proc.wait()
            host.proc = None

    def stop_worker(self, name: str, timeout: float = 120) -> None:
        """SIGTERM to the worker's main process (what Kubernetes and `rnnq down` do): a
        warm shutdown, running jobs hand back."""
        host = self.hosts[name]
        if host.proc is None:
            raise RuntimeError(f"worker {name} is not running")
        os.kill(host.proc.pid, signal.SIGTERM)
        host.proc.wait(timeout)
        host.proc = None

    def restart_redis(self, down_for: float) -> None:
        """Redis stops (AOF flushed) and stays down for `down_for` seconds."""
        host = self.hosts["redis"]
        if host.proc is None:
            raise RuntimeError("redis-server is not running")
        os.killpg(host.proc.pid, signal.SIGTERM)
        host.proc.wait(30)
        back_at = time.monotonic() + down_for  # the outage itself: Redis stays unreachable until then
        wait_for(lambda: time.monotonic() >= back_at and not self.redis_up(), down_for + 30, "the outage")
        self.start_redis()

    def cut(self, name: str) -> None:
        sh("ip", "link", "set", self.hosts[name].link, "down")

    def heal(self, name: str) -> None:
        sh("ip", "link", "set", self.hosts[name].link, "up")

    # ---- the client host

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        host = self.hosts["client"]
        env = {**os.environ, **self.env, "RNNQ_HOME": str(host.home)}
        return subprocess.run(["ip", "netns", "exec", host.ns, sys.executable, "-m", "cli.main", *args], check=False,
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)

    def submit(self, *args: str) -> str:
        res = self.cli(*args)
        if res.returncode != 0:
            raise RuntimeError(f"rnnq {' '.join(args)} failed: {res.stderr}")
        return res.stdout.strip().splitlines()[-1]

    def record(self, job_id: str) -> dict[str, str]:
        """The job's record, plus "host": the harness host its worker runs on."""
        rec = self.redis().hgetall(f"rnnq:job:{job_id}")
        if rec.get("worker"):
            rec["host"] = rec["worker"].split("@")[0]  # Celery names nodes name@hostname
        return rec

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float = 300) -> dict[str, str]:
        wait_for(lambda: self.record(job_id).get("state") in states, timeout, f"job {job_id} to be {states}", 0.2)
        return self.record(job_id)

    def wait_attempt(self, job_id: str, attempt: int, timeout: float = 300) -> dict[str, str]:
        """Until another attempt took the job (it may already have finished)."""
        wait_for(lambda: int(self.record(job_id).get("attempts") or 0) >= attempt, timeout,
                 f"job {job_id} attempt {attempt}", 0.1)
        return self.record(job_id)

    def wait_running(self, job_id: str, attempt: int = 1, min_step: int | None = None,
                     timeout: float = 300) -> dict[str, str]:
        """Until the job runs its `attempt`th attempt (or later) and, with min_step, that
        attempt reported a step >= min_step."""
        def ok() -> bool:
            r = self.record(job_id)
            if r.get("state") != "running" or int(r.get("attempts") or 0) < attempt:
                return False
            progress = json.loads(r.get("progress") or "{}")
            return min_step is None or (progress.get("attempt") == int(r["attempts"])
                                        and progress.get("step", -1) >= min_step)
        wait_for(ok, timeout, f"job {job_id} running attempt {attempt} past step {min_step}", 0.2)
        return self.record(job_id)



class CheckpointMonitor:
    """Polls every job's published checkpoint steps and remembers each change, so a
    step that went back is seen even if it went forward again later."""

    def __init__(self, cluster: Cluster, every: float = 0.2) -> None:
        self.cluster, self.every = cluster, every
        self.history: dict[tuple[str, str], list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                r = self.cluster.redis()
                for job_id in r.zrange("rnnq:jobs", 0, -1):
                    for name in ("best", "last"):
                        step = r.hget(f"rnnq:job:{job_id}", f"ckpt_{name}_step")
                        if step is not None:
                            seen = self.history.setdefault((job_id, name), [])
                            if not seen or seen[-1] != int(step):
                                seen.append(int(step))
            except redis.RedisError:
                continue  # Redis restarting: nothing to read


@dataclass
class Report:
    """What the checker found; every list should be empty."""

    jobs: int = 0
    wrong_state: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    concurrent_duplicates: list[str] = field(default_factory=list)
    step_regressions: list[str] = field(default_factory=list)
    stale_events: list[str] = field(default_factory=list)
    checkpoint_mismatches: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)
    retrained_steps: int = 0

    def failures(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, list) and v}


def check(cluster: Cluster, expect: dict[str, str], deleted: set[str] = frozenset(),  # type: ignore[assignment]
          monitor: CheckpointMonitor | None = None) -> Report:
    """Read every record, event log and checkpoint; see Report for what is counted.

    expect: job id -> the final state its requests call for (succeeded, cancelled), or
    states separated by "|" where a race decides (a cancel that may come after the end).
    """
    r = cluster.redis()
    rep = Report(jobs=len(expect))
    for job_id, want in expect.items():
        rec = r.hgetall(f"rnnq:job:{job_id}")
        state = rec.get("state")
        if state in ("queued", "running"):
            rep.stuck.append(f"{job_id} {state}")
        elif state not in want.split("|"):
            rep.wrong_state.append(f"{job_id} {state} (wanted {want}): {rec.get('error', '')}")
        _check_events(r, job_id, rep)
        if rec.get("kind") == "train" and state == "succeeded":
            _check_checkpoints(cluster, job_id, rec, rep)
    for job_id in deleted:
        keys = [k for k in (f"rnnq:job:{job_id}", f"rnnq:events:{job_id}", f"rnnq:lease:{job_id}") if r.exists(k)]
        if r.zscore("rnnq:jobs", job_id) is not None or r.sismember("rnnq:running", job_id):
            keys.append("index")
        files = cluster.artifact_files(f"jobs/{job_id}")
        if files:
            keys.append(f"artifacts {files}")
        if keys:
            rep.resurrected.append(f"{job_id}: {keys}")
    for (job_id, name), steps in (monitor.history.items() if monitor else []):
        if any(b < a for a, b in itertools.pairwise(steps)):
            rep.step_regressions.append(f"{job_id} published {name} steps {steps}")
    return rep


def _check_events(r: redis.Redis, job_id: str, rep: Report) -> None:
    """Per attempt, steps go forward; an older attempt never writes after a newer one
    (a stale copy); attempts' time ranges do not overlap (two copies training)."""
    events = [e for _, fields in r.xrange(f"rnnq:events:{job_id}") for e in json.loads(fields["b"])]
    spans: dict[int, list[float]] = {}
    last_attempt, last_step = 0, {}
    for e in events:
        a, step = int(e.get("attempt", 0)), int(e["step"])
        if a < last_attempt:
            rep.stale_events.append(f"{job_id}: attempt {a} wrote after attempt {last_attempt}")
        if step < last_step.get(a, -1):  # the last step is reported twice: progress, then its evaluation
            rep.step_regressions.append(f"{job_id}: attempt {a} step {step} after {last_step[a]}")
        last_attempt, last_step[a] = max(last_attempt, a), step
        span = spans.setdefault(a, [e["time"], e["time"]])
        span[0], span[1] = min(span[0], e["time"]), max(span[1], e["time"])
    ordered = sorted(spans.items())
    for (a, (_, end)), (b, (start, _)) in itertools.pairwise(ordered):
        if start < end:
            rep.concurrent_duplicates.append(f"{job_id}: attempts {a} and {b} overlap by {end - start:.2f} s")
    for a in list(last_step)[:-1]:
        nxt = min((s for b, s in _first_steps(events).items() if b > a), default=None)
        if nxt is not None:
            rep.retrained_steps += max(0, last_step[a] - nxt + 1)


def _first_steps(events: list[dict[str, Any]]) -> dict[int, int]:
    first: dict[int, int] = {}
    for e in events:
        first.setdefault(int(e.get("attempt", 0)), int(e["step"]))
    return first


def _check_checkpoints(cluster: Cluster, job_id: str, rec: dict[str, str], rep: Report) -> None:
    """The published checkpoints exist and hold the steps the record says; the last one
    is the step the result reports."""
    from safetensors import safe_open

    result = json.loads(rec.get("result") or "{}")
    for name in ("best", "last"):
        key = rec.get(f"ckpt_{name}")
        if not key:
            rep.checkpoint_mismatches.append(f"{job_id}: no published {name}")
            continue
        path = cluster.fetch_artifact(key, cluster.base / f"check-{job_id}-{name}.safetensors")
        if path is None:
            rep.checkpoint_mismatches.append(f"{job_id}: {name} points at missing {key}")
            continue
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("rnnq", "{}"))
        step = meta.get("step")
        if step != int(rec[f"ckpt_{name}_step"]):
            rep.checkpoint_mismatches.append(f"{job_id}: {name} file step {step} != record {rec[f'ckpt_{name}_step']}")
        if name == "last" and result.get("steps") != step:
            rep.checkpoint_mismatches.append(f"{job_id}: result steps {result.get('steps')} != last checkpoint {step}")
