"""Wall time of read commands, process start to exit: `rnnq list` and `rnnq status JOB`.

    python benchmarks/cli_latency.py [--runs 30]

Starts its own redis-server on a free loopback port, records one job (sent to a queue
no worker reads), then runs each command --runs times as a fresh process, as a user's
shell does, and prints JSON: p50/p90/max in milliseconds per command, and a bare
interpreter's start for scale. Almost all of a read command's time is imports, so
this is what tests/integration/test_cli_imports.py keeps small. Measure on an idle
machine: on a busy one the figures are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        from workers.local import redis_binary

        binary = redis_binary()
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(data)], stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _time(argv: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 1),
            "p90_ms": round(samples[min(len(samples) - 1, int(0.9 * len(samples)))], 1),
            "max_ms": round(samples[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="Runs of each command.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rnnq-cli-latency-") as tmp:
        home = Path(tmp)
        proc, url = _start_redis(home)
        try:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "RNNQ_REDIS_URL": url, "RNNQ_HOME": str(home),
                   "RNNQ_ARTIFACTS": str(home / "artifacts")}
            corpus = home / "corpus.txt"
            corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
            rnnq = [sys.executable, "-m", "cli.main"]
            sent = subprocess.run([*rnnq, "train", str(corpus), "--queue", "bench-nobody", "--json"], env=env,
                                  cwd=ROOT, check=True, capture_output=True, text=True)
            job_id = json.loads(sent.stdout)["job_id"]
            figures = {
                "python": sys.version.split()[0],
                "runs": args.runs,
                "bare_interpreter": _time([sys.executable, "-c", "pass"], env, args.runs),
                "rnnq list": _time([*rnnq, "list"], env, args.runs),
                "rnnq status JOB": _time([*rnnq, "status", job_id], env, args.runs),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
