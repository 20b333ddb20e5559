"""`rnnq up` / `rnnq down`: the embedded local stack, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import ROOT, free_port
from tests.support import make_corpus

pytestmark = pytest.mark.integration


def _rnnq(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] not in ("Z", "X")
    except OSError:
        return False


def test_up_train_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RNNQ_")}
    port = free_port()
    env.update(RNNQ_HOME=str(tmp_path / "home"), RNNQ_LOCAL_PORT=str(port))
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_corpus(4000))
    try:
        # train starts the stack by itself when nothing runs yet (like ray.init()).
        res = _rnnq(env, "train", str(corpus), "--hidden", "16", "--seq-len", "16", "--max-steps", "5", "--wait",
                    "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "started local redis, worker" in res.stderr
        stack = json.loads((tmp_path / "home" / "stack.json").read_text())
        pids = {name: proc["pid"] for name, proc in stack.items()}
        assert set(pids) == {"redis", "worker"} and all(_alive(p) for p in pids.values())
        assert redis.Redis(port=port).config_get("appendonly")["appendonly"] == "yes"
        assert redis.Redis(port=port).config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        again = _rnnq(env, "up")
        assert again.returncode == 0 and str(pids["redis"]) in again.stdout  # nothing started twice
    finally:
        down = _rnnq(env, "down")
    assert down.returncode == 0 and "stopped worker, redis" in down.stdout
    assert not any(_alive(p) for p in pids.values())
    assert _rnnq(env, "down").stdout.strip() == "nothing was running"
