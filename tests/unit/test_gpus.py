"""`rnnq worker --gpus all|0,1,...`: which GPUs, and the celery command line it becomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import rnnq
from workers.gpus import GpuSpecError, child_gpu, parse_gpus


def _no_gpus() -> int:
    return 0


@pytest.mark.parametrize("text, visible, count, expected", [
    ("0,1", None, 0, ["0", "1"]),
    (" 3 , 1 ", None, 0, ["3", "1"]),
    ("all", None, 4, ["0", "1", "2", "3"]),
    ("all", "2,5", 8, ["2", "5"]),  # a scheduler already chose: keep its choice, physical ids
    ("all", "GPU-8f3e2a1b-0c4d-4e5f-9a6b-7c8d9e0f1a2b", 1, ["GPU-8f3e2a1b-0c4d-4e5f-9a6b-7c8d9e0f1a2b"]),
    ("MIG-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d", None, 0, ["MIG-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"]),
])
def test_parse(text: str, visible: str | None, count: int, expected: list[str]) -> None:
    assert parse_gpus(text, visible, lambda: count) == expected


@pytest.mark.parametrize("text, match", [
    ("", "not 'all'"), ("0,", "not 'all'"), ("a,b", "not 'all'"), ("-1", "not 'all'"), ("0;1", "not 'all'"),
    ("1,1", "twice"), ("all", "no GPU found"),
])
def test_refused(text: str, match: str) -> None:
    with pytest.raises(GpuSpecError, match=match):
        parse_gpus(text, None, _no_gpus)


def test_pool_process_i_gets_gpu_i() -> None:
    gpus = ["3", "1"]
    assert [child_gpu(gpus, i) for i in range(4)] == ["3", "1", "3", "1"]


def _worker_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str,
                 env: dict[str, str] | None = None) -> tuple[Any, list[str], dict[str, str]]:
    captured: dict[str, Any] = {}

    def fake_exec(file: str, argv: list[str], environ: dict[str, str]) -> None:
        captured.update(argv=argv, env=environ)

    monkeypatch.setattr("os.execvpe", fake_exec)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    variables = {"RNNQ_REDIS_URL": "redis://127.0.0.1:1/0", "RNNQ_HOME": str(tmp_path), **(env or {})}
    result = CliRunner().invoke(rnnq, ["worker", *args], env=variables)
    return result, captured.get("argv", []), captured.get("env", {})


def test_worker_gpus_becomes_one_pool_process_per_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, argv, env = _worker_argv(monkeypatch, tmp_path, "--gpus", "0,2", "--queues", "train")
    assert result.exit_code == 0, result.output
    assert argv[argv.index("-c") + 1] == "2"
    assert argv[argv.index("--max-tasks-per-child") + 1] == "1"  # a fresh process per job
    assert env["RNNQ_WORKER_GPUS"] == "0,2" and env["RNNQ_WORKER_DEVICE"] == "cuda"
    assert "CUDA_VISIBLE_DEVICES" not in env  # the parent is never pinned; each child is


def test_worker_gpus_all_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, argv, env = _worker_argv(monkeypatch, tmp_path, "--gpus", "all", env={"CUDA_VISIBLE_DEVICES": "4,6,7"})
    assert result.exit_code == 0, result.output
    assert argv[argv.index("-c") + 1] == "3" and env["RNNQ_WORKER_GPUS"] == "4,6,7"


def test_worker_refuses_bad_gpus_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, argv, _ = _worker_argv(monkeypatch, tmp_path, "--gpus", "zero")
    assert result.exit_code == 2 and not argv
    assert "--gpus" in result.output and "'zero' is not 'all' or a list of GPU ids" in result.output


class _FakeNvml:
    """NVML's functions for two GPUs (pynvml's names and shapes), for the collector."""

    NVML_TEMPERATURE_GPU = 0

    class _Memory:
        used, total = 1 << 30, 80 << 30

    class _Rates:
        gpu = 50

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, h: int) -> bytes:
        return f"GPU-0000000{h}-aaaa-bbbb-cccc-dddddddddddd".encode()

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return self._Memory()

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return self._Rates()

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 300_000

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 60


@pytest.mark.parametrize("gpus, expected", [
    (None, {"0", "1"}), (["1"], {"1"}), (["GPU-00000000-aaaa-bbbb-cccc-dddddddddddd"], {"0"}),
])
def test_gpu_metrics_are_labelled_by_the_worker_gpus(gpus: list[str] | None, expected: set[str]) -> None:
    from workers.metrics import NvmlCollector

    collector = NvmlCollector("node-1", gpus)
    collector.nvml = _FakeNvml()
    families = {family.name: family for family in collector.collect()}
    labels = {sample.labels["gpu"] for sample in families["rnnq_gpu_power_watts"].samples}
    assert labels == expected
    assert all(sample.labels["worker"] == "node-1" for sample in families["rnnq_gpu_power_watts"].samples)
