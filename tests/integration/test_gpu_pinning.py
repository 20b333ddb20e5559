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
        seen = probe(redis_server, queue, jobs=6)
        parent_environ = _environ(worker.proc.pid)
    finally:
        stop(worker.proc)
    for report in seen:
        assert report["index"] in (0, 1)
        assert report["cuda_visible_devices"] == child_gpu(gpus, report["index"])
        assert not report["torch_loaded_before"]
    assert {report["cuda_visible_devices"] for report in seen} == set(gpus)
    # --max-tasks-per-child 1: every job in a process of its own ...
    assert len({report["pid"] for report in seen}) == len(seen)
    # ... forked from one parent that never pinned itself (nor loaded CUDA).
    (parent,) = {report["parent"] for report in seen}
    assert parent == worker.proc.pid
    assert "CUDA_VISIBLE_DEVICES" not in parent_environ


def _environ(pid: int) -> dict[str, str]:
    """A process's environment as it is now (Python's os.environ writes through)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
