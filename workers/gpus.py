"""GPU placement for `rnnq worker --gpus all|0,1,...`: one pool process per GPU.

    rnnq worker --gpus 0,2         parent (no CUDA)   pool process 0 -> CUDA_VISIBLE_DEVICES=0
                                                     pool process 1 -> CUDA_VISIBLE_DEVICES=2

Celery's prefork pool numbers its processes 0..N-1, and a process that replaces one
that exited (after each job: --max-tasks-per-child 1) takes the freed number, so a
number is a stable GPU slot. The variable is set in the child before any job imports
torch; the parent only counts GPUs through NVML, which creates no CUDA context (a CUDA
context does not survive fork).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rnn_tasks.errors import ConfigError

# A GPU as CUDA_VISIBLE_DEVICES names it: an index, or a GPU-/MIG- UUID.
_GPU_ID = re.compile(r"^(\d{1,3}|GPU-[0-9A-Fa-f\-]+|MIG-[0-9A-Za-z\-/]+)$")


class GpuSpecError(ConfigError, ValueError):
    """`--gpus` is neither `all` nor a list of GPU ids."""


def nvml_count() -> int:
    """GPUs the NVIDIA driver shows this process (0 without a driver). No CUDA context."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver or no library: no GPUs
        return 0


def parse_gpus(text: str, visible: str | None = None, count: Callable[[], int] = nvml_count) -> list[str]:
    """The GPU ids to pin pool processes to, one per process.

    `all` means every GPU this process may use: the entries of CUDA_VISIBLE_DEVICES
    (`visible`) when it is set (a scheduler or the Kubernetes device plugin chose them),
    else indices 0..n-1 of the GPUs NVML counts. Otherwise a comma-separated list of
    ids, each used once.
    """
    text = text.strip()
    if text == "all":
        if visible is not None and visible.strip():
            ids = [v.strip() for v in visible.split(",") if v.strip()]
        else:
            ids = [str(i) for i in range(count())]
        if not ids:
            raise GpuSpecError("'all': no GPU found (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them all)")
    else:
        ids = [g.strip() for g in text.split(",")]
        if not ids or not all(_GPU_ID.match(g) for g in ids):
            raise GpuSpecError(f"{text!r} is not 'all' or a list of GPU ids like 0,1")
    if len(set(ids)) != len(ids):
        raise GpuSpecError(f"{text!r} names a GPU twice")
    return ids


def child_gpu(gpus: list[str], index: int) -> str:
    """The CUDA_VISIBLE_DEVICES value of pool process number `index`."""
    return gpus[index % len(gpus)]
