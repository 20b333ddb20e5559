"""The shared task training loop on a toy regression: learning, checkpoints, resume."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from rnn_tasks import checkpoint, loop
from rnn_tasks.loop import Callbacks, StepMetrics
from rnn_tasks.spec import TrainSpec


@dataclass(frozen=True)
class ToySpec(TrainSpec):
    TASK: ClassVar[str] = "toy"
    task: str = "toy"


class Toy(loop.Problem):
    """y = x @ w: eight batches of eight rows, shuffled by the loop's generator."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.meta = {"columns": 4}

    def batches_per_epoch(self) -> int:
        return 8

    def epoch(self, generator: torch.Generator, start: int) -> Iterator[Any]:
        order = torch.randperm(64, generator=generator).view(8, 8)
        yield from order[start:]

    def loss(self, batch: Any) -> tuple[torch.Tensor, int]:
        return torch.nn.functional.mse_loss(self.model(self.x[batch]).squeeze(-1), self.y[batch]), len(batch)

    def evaluate(self) -> dict[str, float]:
        return {"val_loss": float(torch.nn.functional.mse_loss(self.model(self.x).squeeze(-1), self.y).detach()), "extra": 1.0}


def spec(**kw: Any) -> ToySpec:
    return ToySpec(**{"data": "toy/data", "lr": 0.05, "warmup_steps": 0, "eval_every": 10, "patience": None, **kw})


def test_fit_learns_and_saves_a_loadable_best_checkpoint(tmp_path: Path) -> None:
    reports: list[StepMetrics] = []
    problem = Toy()
    with torch.no_grad():
        before = problem.evaluate()["val_loss"]
    summary = loop.fit(spec(max_steps=200), problem, Callbacks(on_step=reports.append), checkpoint_dir=tmp_path)
    assert summary["steps"] == 200 and summary["stopped_by"] == "max_steps"
    assert summary["best_val_loss"] < before / 20
    assert summary["metrics"]["extra"] == 1.0 and summary["tokens"] == 200 * 8
    assert any(r.val_loss is not None for r in reports) and reports[-1].step == 200
    ckpt, weights = loop.load(tmp_path / loop.BEST)
    assert ckpt.task == "toy" and ckpt.meta == {"columns": 4} and ckpt.spec["max_steps"] == 200
    fresh = Toy()
    fresh.model.load_state_dict(weights)
    with torch.no_grad():
        assert math.isclose(fresh.evaluate()["val_loss"], summary["best_val_loss"], rel_tol=1e-5)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path: Path) -> None:
    whole = Toy()
    loop.fit(spec(max_steps=30), whole)

    first = Toy()
    stop = Callbacks(should_stop=lambda: len(seen) >= 1, on_step=lambda m: seen.append(m.step) if m.step >= 13 else None)
    seen: list[int] = []
    part = loop.fit(spec(max_steps=30), first, stop, checkpoint_dir=tmp_path)
    assert part["stopped_by"] == "requested" and 13 <= part["steps"] < 30  # mid-epoch
    resumed = Toy()
    rest = loop.fit(spec(max_steps=30), resumed, checkpoint_dir=tmp_path, resume=tmp_path / loop.LAST)
    assert rest["steps"] == 30
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # same data order, optimizer state and schedule


def test_a_diverging_loss_fails_with_the_step(tmp_path: Path) -> None:
    problem = Toy()
    problem.y = problem.y * float("inf")
    with pytest.raises(Exception, match="lower the learning rate"):
        loop.fit(spec(max_steps=20), problem, checkpoint_dir=tmp_path)


def test_resume_after_a_run_that_stopped_on_an_epochs_last_batch(tmp_path: Path) -> None:
    whole = Toy()
    loop.fit(spec(max_steps=12), whole)
    first = Toy()
    part = loop.fit(spec(max_steps=8), first, checkpoint_dir=tmp_path)  # 8 batches = exactly one epoch
    assert part["steps"] == 8
    resumed = Toy()
    rest = loop.fit(spec(max_steps=12), resumed, checkpoint_dir=tmp_path, resume=tmp_path / loop.LAST)
    assert rest["steps"] == 12 and rest["epochs"] == 1.5


class Recorded(Toy):
    """The Toy that keeps the weights every training step starts from."""

    def __init__(self) -> None:
        super().__init__()
        self.trajectory: list[list[torch.Tensor]] = []

    def loss(self, batch: Any) -> tuple[torch.Tensor, int]:
        self.trajectory.append([p.detach().clone() for p in self.model.parameters()])
        return super().loss(batch)


def test_ema_evaluates_and_keeps_the_average_and_trains_on_the_weights(tmp_path: Path) -> None:
    decay, steps = 0.5, 12  # the decay warms up as (1 + t) / (10 + t) and reaches 0.5 at step t = 8
    problem = Recorded()
    summary = loop.fit(spec(max_steps=steps, eval_every=100, min_lr_ratio=1.0, ema=decay), problem,
                       checkpoint_dir=tmp_path)
    trained = [p.detach().clone() for p in problem.model.parameters()]
    after_step = [*problem.trajectory[1:], trained]  # the weights after steps 1..N
    expected = problem.trajectory[0]  # the average starts at the initial weights
    for t, weights in enumerate(after_step):
        d = min(decay, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights, strict=True)]

    names = [name for name, _ in problem.model.named_parameters()]
    _, best = loop.load(tmp_path / loop.BEST)
    for name, want in zip(names, expected, strict=True):
        torch.testing.assert_close(best[name], want)  # the only evaluation was at the end: best is the average
    assert not torch.allclose(best["weight"], trained[0])
    torch.testing.assert_close(checkpoint.load_average(tmp_path / loop.LAST), expected)
    _, last = loop.load(tmp_path / loop.LAST)
    for name, want in zip(names, trained, strict=True):
        torch.testing.assert_close(last[name], want)  # training goes on from its own weights
    scored = Toy()
    scored.model.load_state_dict(best)
    with torch.no_grad():
        assert math.isclose(scored.evaluate()["val_loss"], summary["best_val_loss"], rel_tol=1e-6)


def test_a_resumed_run_continues_the_same_average(tmp_path: Path) -> None:
    whole_dir, part_dir = tmp_path / "whole", tmp_path / "part"
    loop.fit(spec(max_steps=30, ema=0.9), Toy(), checkpoint_dir=whole_dir)
    seen: list[int] = []
    stop = Callbacks(should_stop=lambda: len(seen) >= 1, on_step=lambda m: seen.append(m.step) if m.step >= 13 else None)
    part = loop.fit(spec(max_steps=30, ema=0.9), Toy(), stop, checkpoint_dir=part_dir)
    assert 13 <= part["steps"] < 30
    loop.fit(spec(max_steps=30, ema=0.9), Toy(), checkpoint_dir=part_dir, resume=part_dir / loop.LAST)
    whole = checkpoint.load_average(whole_dir / loop.LAST)
    assert [tuple(t.shape) for t in whole or []] == [(1, 4), (1,)]  # the Toy's weight and bias, averaged
    torch.testing.assert_close(checkpoint.load_average(part_dir / loop.LAST), whole)
    torch.testing.assert_close(loop.load(whole_dir / loop.BEST)[1], loop.load(part_dir / loop.BEST)[1])


class Clock:
    """loop's clock, moved by hand: each training step takes exactly one second."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class TimedToy(Toy):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def loss(self, batch: Any) -> tuple[torch.Tensor, int]:
        self.clock.now += 1.0
        return super().loss(batch)


def test_eval_seconds_validates_by_training_time_as_well_as_by_steps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(loop, "time", clock)
    reports: list[StepMetrics] = []
    loop.fit(spec(max_steps=20, eval_every=10**6, eval_seconds=5.0), TimedToy(clock),
             Callbacks(on_step=reports.append), checkpoint_dir=tmp_path)
    assert [r.step for r in reports if r.val_loss is not None] == [5, 10, 15, 20]  # 20: the final evaluation
    reports.clear()
    loop.fit(spec(max_steps=20, eval_every=10**6), TimedToy(clock), Callbacks(on_step=reports.append),
             checkpoint_dir=tmp_path / "b")
    assert [r.step for r in reports if r.val_loss is not None] == [20]  # off by default: only the final one
