"""Read commands import only what they need: no Celery, kombu, torch, rich or YAML for
`rnnq list` and `rnnq status`, nor the local stack's or the senders' modules, run for
real against Redis (startup time is imports)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"celery", "kombu", "billiard", "torch", "rich", "yaml", "optuna", "boto3", "botocore", "prometheus_client"}
# rnnq's own modules a read command against RNNQ_REDIS_URL has no use for: the local
# stack's process management, and building and sending task messages (Celery's side).
NOT_FOR_READS = {"workers.local", "workers.dispatch", "workers.celeryconf", "workers.submit", "workers.app"}
_PROBE = """
import json, sys
from cli.main import rnnq
for args in {commands!r}:
    try:
        rnnq.main(args, prog_name="rnnq", standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(env: Env, commands: list[list[str]]) -> set[str]:
    probe = _PROBE.format(commands=commands)
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**env.vars, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_list_and_status_load_no_heavy_modules(env: Env) -> None:
    idle = "cli-imports-idle"  # no worker reads it: the job is only recorded and sent
    job = env.cli("train", "--json", str(_corpus(env)), "--max-steps", "1", "--queue", idle)
    env.redis.delete(idle)
    assert job.exit_code == 0, job.output
    job_id = json.loads(job.stdout)["job_id"]
    loaded = _modules_after(env, [["list", "--json"], ["status", job_id], ["status", job_id, "--json"]])
    assert {"cli.jobs", "redis"} <= loaded  # sanity: the commands ran
    assert not HEAVY & {m.split(".")[0] for m in loaded}
    assert not {m for m in loaded if m.startswith("rnn_tasks.") and m != "rnn_tasks.errors"}
    assert not NOT_FOR_READS & loaded


def _corpus(env: Env) -> Path:
    path = env.tmp / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    return path
