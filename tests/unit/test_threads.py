"""CPU threads: one decision (rnn_tasks.device), from the model's size and the cores the
process really has. The figures behind the rule are in benchmarks/threads.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rnn_tasks import device as devices
from rnn_tasks.device import PARAMS_PER_THREAD, cgroup_cpus, choose_threads, fit_threads, usable_cores


@pytest.fixture(autouse=True)
def keep_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("parameters", [0, 10_000, 270_000, PARAMS_PER_THREAD - 1])
@pytest.mark.parametrize("cores", [1, 2, 16])
def test_small_models_run_on_one_thread_however_many_cores(parameters: int, cores: int) -> None:
    assert choose_threads(parameters, cores) == 1


def test_large_models_get_a_thread_per_share_of_work_up_to_the_cores() -> None:
    assert choose_threads(2 * PARAMS_PER_THREAD, 16) == 2
    assert choose_threads(4_200_000, 2) == 2  # a 512-wide two-layer LSTM on the 2-core machine
    assert choose_threads(100_000_000, 8) == 8
    assert choose_threads(100_000_000, 1) == 1


def test_the_default_language_model_gets_every_core_of_the_two() -> None:
    # The regression this rule once caused: the default LM on one thread trained at 58%
    # of its two-thread speed on an idle 2-core machine.
    from rnn_tasks.lm.model import LanguageModel, LMConfig
    from rnn_tasks.lm.spec import LMSpec

    spec = LMSpec(data="inputs/x")
    model = LanguageModel(LMConfig(vocab_size=65, arch=spec.arch, embed=spec.embed, hidden=spec.hidden,
                                   layers=spec.layers))
    assert choose_threads(sum(p.numel() for p in model.parameters()), 2) == 2


def test_threads_never_fall_as_the_model_grows() -> None:
    sizes = [0, 10**4, 10**5, 10**6, 3 * 10**6, 10**7, 10**8]
    assert [choose_threads(n, 4) for n in sizes] == sorted(choose_threads(n, 4) for n in sizes)


@pytest.mark.parametrize(("text", "cores"), [("max 100000\n", None), ("150000 100000\n", 1.5),
                                              ("400000 100000\n", 4.0), ("50000 100000\n", 0.5)])
def test_cgroup_quota_is_read_in_cores(tmp_path: Path, text: str, cores: float | None) -> None:
    (tmp_path / "cpu.max").write_text(text)
    assert cgroup_cpus(tmp_path / "cpu.max") == cores


def test_no_cgroup_file_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpus(tmp_path / "missing") is None
    assert usable_cores(tmp_path / "missing") == len(os.sched_getaffinity(0))


def test_usable_cores_is_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("50000 100000\n")  # half a core: still one thread
    assert usable_cores(quota) == 1
    quota.write_text(f"{(affinity + 8) * 100000} 100000\n")  # a quota above the mask: the mask wins
    assert usable_cores(quota) == affinity
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == affinity


def test_fit_threads_sets_torch_threads_from_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "usable_cores", lambda: 2)
    torch.set_num_threads(2)
    tiny = torch.nn.LSTM(16, 24)
    assert fit_threads(tiny, torch.device("cpu")) == 1 and torch.get_num_threads() == 1
    large = torch.nn.LSTM(512, 512, num_layers=2)  # ~4.2M parameters
    assert fit_threads(large, torch.device("cpu")) == 2 and torch.get_num_threads() == 2


def test_fit_threads_leaves_gpu_jobs_alone() -> None:
    torch.set_num_threads(1)
    assert fit_threads(torch.nn.Linear(2, 2), torch.device("cuda")) == 0
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(("affinity", "quota", "processes", "share"), [
    (8, None, 2, 4),  # --concurrency 2 on 8 cores: 4 each
    (8, None, 3, 2),  # a remainder core is left idle rather than oversubscribed
    (8, 2.5, 2, 1),  # the cgroup quota (2 cores) is divided, not the affinity mask
    (2, None, 2, 1),  # this development machine with --concurrency 2
    (2, None, 8, 1),  # more processes than cores: still one thread each
    (4, None, 1, 4),  # a single process keeps every core
])
def test_a_worker_pool_divides_the_cores_among_its_processes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, affinity: int, quota: float | None, processes: int,
        share: int) -> None:
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(affinity)))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n" if quota is None else f"{int(quota * 100000)} 100000\n")
    monkeypatch.setattr(devices, "_sharing_processes", 1)  # restored after the test
    devices.share_cores(processes)
    assert usable_cores(cpu_max) == share
    assert choose_threads(100 * PARAMS_PER_THREAD, usable_cores(cpu_max)) == share  # a large model gets the share


def test_share_cores_never_goes_below_one_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(devices, "_sharing_processes", 1)
    devices.share_cores(0)
    assert usable_cores(tmp_path / "missing") == len(os.sched_getaffinity(0))
