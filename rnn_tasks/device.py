"""Device choice and the per-device speed settings.

CPU threads are decided here and nowhere else: choose_threads() from the model's size
and the cores this process really has (usable_cores()), applied by fit_threads() once a
job's model is built. A worker running N jobs at once (N pool processes on one node)
tells each process its share first (share_cores(N)), so the N jobs do not oversubscribe
the node's cores:

    node, 8 usable cores, `rnnq worker --concurrency 2`
    pool process 1: usable_cores() = 8 // 2 = 4  -> a large model's job runs 4 threads
    pool process 2: usable_cores() = 8 // 2 = 4  -> so does the job beside it
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
# Parameters each intra-op thread needs before a second thread pays for its
# synchronisation. Measured on the 2-core development machine: a tiny LM (~10k
# parameters) steps in 26-28 ms on one thread whatever runs beside it, but in 40 ms on
# two threads alone, 317 ms beside one busy process and 1.6 s beside a loop of CLI
# calls. Forecast models measured the same way under load (hidden 16-256, batch 32): one
# thread 0.01-0.09 s/step, two 0.15-2.4 s; a 256-wide GRU (~200k parameters) is still
# better on one. The default LM (GRU 1x512, ~925k parameters) trains at 14,021 tokens/s
# on two threads and 8,176 on one, idle (benchmarks/shakespeare.py, README): it must get
# both cores.
PARAMS_PER_THREAD = 300_000


def resolve(device: str) -> torch.device:
    """auto -> cuda when available, else cpu. An unavailable GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available on this worker")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} requested but this worker has {torch.cuda.device_count()} GPU(s)")
    return dev


def configure(dev: torch.device) -> None:
    """Per-process speed settings.

    CPU: one intra-op thread per usable core until the model is known; fit_threads()
    then sets what the model needs. CUDA: cuDNN autotuning for the fixed window shape,
    TF32 for the fp32 parts.
    """
    if dev.type == "cpu":
        torch.set_num_threads(usable_cores())
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(dev: torch.device, enabled: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 RNNs are slower than fp32)."""
    if enabled and dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cgroup_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> float | None:
    """The CPU quota of this process's cgroup in cores (1.5 for "150000 100000"); None
    when there is none ("max"), or no cgroup v2 file to read."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


# Processes that run jobs side by side on this process's cores (a worker's pool): 1 unless
# the worker says otherwise through share_cores(). A plain value, set per process.
_sharing_processes = 1


def share_cores(processes: int) -> None:
    """Declare that `processes` job processes (a worker's pool) share this process's
    cores, so usable_cores() counts only this process's share. The worker calls it
    before each job; a library caller that never does keeps every core."""
    global _sharing_processes
    _sharing_processes = max(1, processes)


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may run on at once: its affinity mask (a container's cpuset,
    taskset), capped by the cgroup CPU quota (docker --cpus, a Kubernetes limit), which
    throttles a process that runs more threads than it allows, then divided among the
    processes that share them (share_cores). At least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpus(cpu_max)
    if quota is not None:
        cores = min(cores, math.floor(quota))
    return max(1, cores // _sharing_processes)


def choose_threads(parameters: int, cores: int) -> int:
    """Intra-op threads for a model of `parameters` on `cores` usable cores: one per
    PARAMS_PER_THREAD parameters, at least 1, at most one per core. Small models get
    one thread: their steps are too short to split, and a second thread that waits for
    a busy core stalls every step (see PARAMS_PER_THREAD)."""
    return max(1, min(cores, parameters // PARAMS_PER_THREAD))


def fit_threads(model: torch.nn.Module, dev: torch.device) -> int:
    """Set the intra-op threads for running `model` on `dev`; returns the count (0 on
    a GPU, where the host threads only feed the device and are left as they are)."""
    return set_threads(sum(p.numel() for p in model.parameters()), dev)


def set_threads(parameters: int, dev: torch.device) -> int:
    """fit_threads() for a model known by its parameter count (a checkpoint's weights)."""
    if dev.type != "cpu":
        return 0
    threads = choose_threads(parameters, usable_cores())
    torch.set_num_threads(threads)
    return threads
