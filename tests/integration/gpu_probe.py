"""A Celery task that reports where its pool process runs, for the GPU pinning tests.

Started with `celery -A workers.app worker -I tests.integration.gpu_probe`: the real
app and its worker_process_init hook, plus this task, without the job runner. The task
pushes what it sees onto a Redis list the test waits on (BLPOP, no sleeps).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import redis

from workers.app import app


@app.task(name="rnnq.test.gpu_probe")
def gpu_probe(reply_to: str, cuda: bool = False) -> None:
    from billiard.process import current_process

    client = redis.Redis.from_url(os.environ["RNNQ_REDIS_URL"])
    # Hold this pool process until the test has seen every process of the round start,
    # so each round occupies all of them at once (and so every GPU slot).
    client.rpush(f"{reply_to}:started", os.getpid())
    if client.blpop([f"{reply_to}:go"], timeout=120) is None:
        return

    seen: dict[str, Any] = {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
        "pid": os.getpid(),
        "parent": os.getppid(),
        "index": getattr(current_process(), "index", None),
        "torch_loaded_before": "torch" in sys.modules,
    }
    if cuda:  # on a GPU machine: what CUDA itself sees from this process
        import torch

        seen["device_count"] = torch.cuda.device_count()
        seen["uuid"] = str(torch.cuda.get_device_properties(0).uuid)
    client.rpush(reply_to, json.dumps(seen))


def start_argv(queue: str, concurrency: int, name: str) -> list[str]:
    """The celery command line `rnnq worker --gpus` builds, plus this module."""
    return [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-I", "tests.integration.gpu_probe",
            "-Q", queue, "-c", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "-P", "prefork", "--max-tasks-per-child", "1"]


def probe(redis_url: str, queue: str, processes: int, rounds: int, cuda: bool = False,
          timeout: float = 120.0) -> list[list[dict[str, Any]]]:
    """Send `rounds` rounds of one probe per pool process; each round's probes all run
    at once (they wait for each other), so a round sees every process. Returns what
    the processes reported, per round."""
    import uuid

    from workers import settings
    from workers.app import make_app

    client = redis.Redis.from_url(redis_url)
    sender = make_app(settings.resolve(redis_url=redis_url))
    out = []
    for _ in range(rounds):
        reply_to = f"rnnq-test:gpu-probe:{uuid.uuid4().hex}"
        for _ in range(processes):
            sender.send_task("rnnq.test.gpu_probe", args=[reply_to, cuda], queue=queue)
        for _ in range(processes):
            started = client.blpop([f"{reply_to}:started"], timeout=timeout)
            assert started is not None, f"not every pool process took a probe within {timeout:.0f} s"
        client.rpush(f"{reply_to}:go", *["go"] * processes)
        seen = []
        for _ in range(processes):
            item = client.blpop([reply_to], timeout=timeout)
            assert item is not None, f"a probe did not report within {timeout:.0f} s"
            seen.append(json.loads(item[1]))
        out.append(seen)
    return out
