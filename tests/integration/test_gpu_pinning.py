"""`--gpus`: one pool process per GPU, pinned with CUDA_VISIBLE_DEVICES in the child, a
fresh process per job, nothing in the parent. Runs without a GPU: it checks the
environment each pool process gets, through a real Celery worker and a probe task."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import start_worker, stop
from tests.integration.gpu_probe import probe, start_argv
from workers.gpus import child_gpu

pytestmark = pytest.mark.integration


def test_each_pool_process_gets_its_gpu_and_a_fresh_process_per_job(redis_server: str, tmp_path: Path) -> None:
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    gpus = ["0", "1"]
    variables = {"RNNQ_REDIS_URL": redis_server, "RNNQ_HOME": str(tmp_path / "home"),
                 "RNNQ_ARTIFACTS": str(tmp_path / "artifacts"), "RNNQ_WORKER_GPUS": ",".join(gpus)}
    worker = start_worker(variables, tmp_path / "worker.log", argv=start_argv(queue, len(gpus), queue))
    try:
        rounds = probe(redis_server, queue, processes=len(gpus), rounds=3)
        parent_environ = _environ(worker.proc.pid)
    finally:
        stop(worker.proc)
    for round_ in rounds:
        # Both pool processes busy at once: one on each GPU.
        assert sorted(report["index"] for report in round_) == [0, 1]
        assert sorted(report["cuda_visible_devices"] for report in round_) == sorted(gpus)
    seen = [report for round_ in rounds for report in round_]
    for report in seen:
        assert report["cuda_visible_devices"] == child_gpu(gpus, report["index"])
        assert report["cuda_device_order"] == "PCI_BUS_ID"  # ids mean what NVML and nvidia-smi say
        assert not report["torch_loaded_before"]
    # --max-tasks-per-child 1: every job in a process of its own ...
    assert len({report["pid"] for report in seen}) == len(seen)
    # ... forked from the one parent, which was started unpinned (the pin is set in each
    # child by worker_process_init; the parent has not loaded torch: test_layering).
    (parent,) = {report["parent"] for report in seen}
    assert parent == worker.proc.pid
    assert "CUDA_VISIBLE_DEVICES" not in parent_environ


def _environ(pid: int) -> dict[str, str]:
    """The environment a process was started with (/proc shows the initial block)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
