"""Device choice and the per-device speed settings.

CPU threads are decided here and nowhere else: choose_threads() from the model's size
and the cores this process really has (usable_cores()), applied by fit_threads() once a
job's model is built. A worker running N jobs at once (N pool processes on one node)
tells each process its share first (share_cores(N)), so the N jobs do not oversubscribe
the node's cores:

    node, 8 usable cores, `rnnq worker --concurrency 2`
    pool process 1: usable_cores() = 8 // 2 = 4  -> a large model's job runs 4 threads
    pool process 2: usable_cores() = 8 // 2 = 4  -> so does the job beside it

Precision is decided here too, by bf16(): on CUDA bf16 autocast whenever the spec's amp
is on; on a CPU only for a model with an LSTM layer of at least BF16_MIN_HIDDEN units, of
a task whose sequences are never packed (its spec's CPU_BF16: the language model), on a
CPU with bf16 instructions (AMX tiles or AVX512-BF16); fp32 otherwise.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
# Parameters each intra-op thread needs before a second thread pays for its
# synchronisation. Measured on the 2-core development machine: a tiny LM (~10k
# parameters) steps in 26-28 ms on one thread whatever runs beside it, but in 40 ms on
# two threads alone, 317 ms beside one busy process and 1.6 s beside a loop of CLI
# calls. Forecast models measured the same way under load (hidden 16-256, batch 32): one
# thread 0.01-0.09 s/step, two 0.15-2.4 s; a 256-wide GRU (~200k parameters) is still
# better on one. The default LM of then (GRU 1x512, ~925k parameters) trained at 14,021 tokens/s
# on two threads and 8,176 on one, idle (benchmarks/shakespeare.py, README): it must get
# both cores.
PARAMS_PER_THREAD = 300_000
# bf16 autocast on a CPU pays only where the CPU computes in bf16 natively: AMX tiles (Intel
# Sapphire Rapids and later) or AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake), and
# there only for unpacked LSTM layers. With AMX oneDNN ran 128- to 768-wide bf16 LSTM layers
# 1.8-2.5x faster than fp32, GRUs 0.7-1.4x (slower below 384), and a classifier's packed
# biLSTMs slower (five 64-wide: 148 s against 86 s); with AVX512-BF16 (AMD EPYC) 256- to
# 768-wide LSTM layers 1.6-1.8x faster. benchmarks/cpu_bf16.py, README. Without either, bf16
# on a CPU is emulated, slower than fp32, and never used.
BF16_MIN_HIDDEN = 256


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
    """bf16 autocast on `dev` when `enabled` (what bf16() decided for the model); else a no-op."""
    return torch.autocast(dev.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def bf16(dev: torch.device, amp: bool, weights: Mapping[str, torch.Size], unpacked: bool) -> bool:
    """Whether a model (its weights' names and shapes) runs under bf16 autocast on `dev`:
    never when the spec's `amp` is off; on CUDA always; on a CPU only when its sequences
    are never packed (`unpacked`: the task's CPU_BF16), it has an LSTM layer of at least
    BF16_MIN_HIDDEN units, and the CPU computes in bf16 natively (cpu_bf16())."""
    if not amp:
        return False
    if dev.type == "cuda":
        return True
    return dev.type == "cpu" and unpacked and widest_lstm(weights) >= BF16_MIN_HIDDEN and cpu_bf16() is not None


def shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
    """A model's weights by name, as bf16() and fit_shapes() read them."""
    return {name: p.shape for name, p in model.named_parameters()}


def cpu_bf16() -> str | None:
    """How this CPU computes in bf16, fastest first: "amx" (AMX tiles the kernel lets this
    process use), "avx512_bf16"; None when it has neither (bf16 would be emulated)."""
    for unit, probe in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        supported = getattr(torch.cpu, probe, None)
        if supported is not None and supported():
            return unit
    return None


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
    return fit_shapes(shapes(model), dev)


def fit_shapes(weights: Mapping[str, torch.Size], dev: torch.device) -> int:
    """fit_threads() for a model known by its weights' names and shapes (a checkpoint's)."""
    if dev.type != "cpu":
        return 0
    threads = choose_threads(sum(math.prod(shape) for shape in weights.values()), usable_cores())
    torch.set_num_threads(threads)
    return threads


def widest_lstm(weights: Mapping[str, torch.Size]) -> int:
    """The hidden size of the model's widest LSTM layer (0: none): an LSTM's recurrent
    weights `*.weight_hh_l<k>` are (4 * hidden, hidden); a GRU's (3 * hidden, hidden)."""
    return max((shape[1] for name, shape in weights.items()
                if ".weight_hh_l" in f".{name}" and len(shape) == 2 and shape[0] == 4 * shape[1]), default=0)
