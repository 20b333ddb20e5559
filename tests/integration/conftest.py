"""Real servers for integration tests: a redis-server on a free port, real workers.

Every process is started here and torn down after; nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from cli.main import rnnq
from tests.integration.s3server import s3  # noqa: F401 - fixture: a moto S3 server on loopback
from tests.support import wait_for

__all__ = ["wait_for"]  # re-exported: tests import it from here

ROOT = Path(__file__).resolve().parents[2]
STARTUP = 60.0  # seconds a server or worker may take to come up on a loaded CI machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_redis(data: Path, *extra: str, port: int | None = None, url: str | None = None,
                ping: Callable[[], bool] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on a free loopback port (plus `extra` options); returns it and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        from workers.local import redis_binary

        binary = redis_binary()
    port = port or free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data)]
    proc = subprocess.Popen([binary, *args, *extra], stdout=subprocess.DEVNULL, start_new_session=True)
    url = url or f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.AuthenticationError:
            return True
        except redis.ConnectionError:
            return proc.poll() is not None

    wait_for(ping or up, STARTUP, f"redis-server on port {port}")
    if proc.poll() is not None:
        raise RuntimeError(f"redis-server exited with {proc.returncode}")
    return proc, url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop(proc)


@dataclass
class Env:
    """What a test needs to drive rnnq against the test servers."""

    vars: dict[str, str]
    redis: redis.Redis
    tmp: Path

    def cli(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(rnnq, list(args), env=self.vars, input=input, catch_exceptions=False)

    def job_count(self) -> int:
        return int(self.redis.zcard("rnnq:jobs"))

    def queued(self, queue: str) -> int:
        return int(self.redis.llen(queue))


@pytest.fixture(scope="module")
def module_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture
def env(redis_server: str, module_artifacts: Path, tmp_path: Path) -> Env:
    """A clean database for each test: FLUSHDB drops earlier tests' job records, their
    queued and unacknowledged messages and kombu's bindings (a worker's consumer and each
    submit declare their queue again), so no test sees another's jobs. The server is
    shared by the session; tests that change its configuration start their own."""
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    client.flushdb()
    variables = {
        "RNNQ_REDIS_URL": redis_server,
        "RNNQ_ARTIFACTS": str(module_artifacts),
        "RNNQ_HOME": str(tmp_path / "home"),
    }
    return Env(vars=variables, redis=client, tmp=tmp_path)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path


def start_worker(variables: dict[str, str], log: Path, queues: str = "train,generate",
                 argv: list[str] | None = None, concurrency: int = 1) -> Worker:
    """A real worker process; returns once Celery reports it is ready."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    cmd = argv or [sys.executable, "-m", "cli.main", "worker", "--queues", queues, "--name", name,
                   "--concurrency", str(concurrency)]
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                            env={**os.environ, **variables})
    wait_for(lambda: b" ready." in log.read_bytes() or proc.poll() is not None, STARTUP, "worker start")
    if proc.poll() is not None:
        raise RuntimeError(f"worker exited with {proc.returncode}:\n{log.read_text()}")
    return Worker(proc, log)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """One scrape: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items() if n == name and labels.items() <= dict(lab).items())


def start_exporter(variables: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """`rnnq exporter` on a free loopback port; returns once it answers a scrape."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "exporter", "--port", str(port), "--addr", "127.0.0.1"],
                            cwd=ROOT, env={**os.environ, **variables}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def answers() -> bool:
        try:
            scrape(port)
        except OSError:
            return proc.poll() is not None
        return True

    wait_for(answers, STARTUP, "the exporter")
    if proc.poll() is not None:
        raise RuntimeError(f"exporter exited with {proc.returncode}")
    return proc, port


@pytest.fixture(scope="module")
def worker(redis_server: str, module_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    home = tmp_path_factory.mktemp("worker")
    variables = {"RNNQ_REDIS_URL": redis_server, "RNNQ_ARTIFACTS": str(module_artifacts), "RNNQ_HOME": str(home)}
    w = start_worker(variables, home / "worker.log")
    yield w
    stop(w.proc)
