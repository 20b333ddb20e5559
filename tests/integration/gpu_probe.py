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

    seen: dict[str, Any] = {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
        "parent": os.getppid(),
        "index": getattr(current_process(), "index", None),
        "torch_loaded_before": "torch" in sys.modules,
    }
    if cuda:  # on a GPU machine: what CUDA itself sees from this process
        import torch

        seen["device_count"] = torch.cuda.device_count()
        seen["uuid"] = str(torch.cuda.get_device_properties(0).uuid)
    redis.Redis.from_url(os.environ["RNNQ_REDIS_URL"]).rpush(reply_to, json.dumps(seen))


def start_argv(queue: str, concurrency: int, name: str) -> list[str]:
    """The celery command line `rnnq worker --gpus` builds, plus this module."""
    return [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-I", "tests.integration.gpu_probe",
            "-Q", queue, "-c", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "-P", "prefork", "--max-tasks-per-child", "1"]


def probe(redis_url: str, queue: str, jobs: int, cuda: bool = False, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Send `jobs` probes to `queue` and return what each pool process reported."""
    import uuid

    from workers import settings
    from workers.app import make_app

    client = redis.Redis.from_url(redis_url)
    sender = make_app(settings.resolve(redis_url=redis_url))
    reply_to = f"rnnq-test:gpu-probe:{uuid.uuid4().hex}"
    for _ in range(jobs):
        sender.send_task("rnnq.test.gpu_probe", args=[reply_to, cuda], queue=queue)
    seen = []
    for _ in range(jobs):
        item = client.blpop([reply_to], timeout=timeout)
        assert item is not None, f"a probe did not report within {timeout:.0f} s"
        seen.append(json.loads(item[1]))
    return seen
