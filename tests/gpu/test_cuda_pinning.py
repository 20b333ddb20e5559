"""On a CUDA machine: a worker started like `rnnq worker --gpus all` gives each pool
process exactly one GPU, a different one per process, and CUDA sees the GPU it was
pinned to (compared by UUID with NVML's view). Skipped without CUDA.

Run: python -m pytest tests/gpu -m gpu
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import redis_server, start_worker, stop  # noqa: F401 - redis_server: fixture
from tests.integration.gpu_probe import probe, start_argv
from workers.gpus import nvml_count, parse_gpus

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _nvml_uuids() -> dict[str, str]:
    import pynvml

    pynvml.nvmlInit()
    try:
        out = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            raw = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            out[str(i)] = (raw.decode() if isinstance(raw, bytes) else raw).removeprefix("GPU-")
        return out
    finally:
        pynvml.nvmlShutdown()


def test_every_pool_process_sees_only_its_gpu(redis_server: str, tmp_path: Path) -> None:  # noqa: F811
    gpus = parse_gpus("all", None, nvml_count)
    assert gpus, "CUDA is available but NVML counts no GPU"
    queue = f"gpu-probe-{uuid.uuid4().hex[:8]}"
    variables = {"RNNQ_REDIS_URL": redis_server, "RNNQ_HOME": str(tmp_path / "home"),
                 "RNNQ_ARTIFACTS": str(tmp_path / "artifacts"), "RNNQ_WORKER_GPUS": ",".join(gpus)}
    worker = start_worker(variables, tmp_path / "worker.log", argv=start_argv(queue, len(gpus), queue))
    try:
        rounds = probe(redis_server, queue, processes=len(gpus), rounds=2, cuda=True, timeout=300)
    finally:
        stop(worker.proc)
    uuids = _nvml_uuids()
    for round_ in rounds:
        assert sorted(report["cuda_visible_devices"] for report in round_) == sorted(gpus)
        for report in round_:
            assert report["device_count"] == 1
            assert report["uuid"].removeprefix("GPU-") == uuids[report["cuda_visible_devices"]]
