"""The language model on the shared loop: it learns, reports through callbacks, stops, checkpoints, resumes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from rnn_tasks import checkpoint
from rnn_tasks.lm import task
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.loop import BEST, LAST, Callbacks, NumericalError, StepMetrics, lr_at

SMALL = {"data": "corpora/test", "hidden": 64, "embed": 16, "seq_len": 32, "batch_size": 8, "lr": 0.01}


def _spec(**overrides: object) -> LMSpec:
    return LMSpec.from_dict({**SMALL, **overrides})


def train(spec: LMSpec, text: str, callbacks: Callbacks | None = None, checkpoint_dir: Path | None = None,
          resume: Path | None = None) -> dict[str, Any]:
    return task.train(spec, {"data": text.encode()}, callbacks, checkpoint_dir, resume)


def test_a_few_hundred_steps_lower_the_loss(corpus: str, tmp_path: Path) -> None:
    reports: list[StepMetrics] = []
    result = train(_spec(max_steps=300, eval_every=100), corpus, Callbacks(on_step=reports.append), tmp_path)
    uniform = math.log(len(set(corpus)))
    assert result["steps"] == 300 and result["stopped_by"] == "max_steps"
    assert result["val_loss"] < 0.6 * uniform  # learned far beyond guessing
    evaluations = [r.val_loss for r in reports if r.val_loss is not None]
    assert evaluations[-1] < evaluations[0]
    assert [r.step for r in reports] == sorted(r.step for r in reports)
    assert any(r.val_loss is not None for r in reports)
    assert reports[-1].progress == 1.0
    assert (tmp_path / BEST).is_file() and (tmp_path / LAST).is_file()


@pytest.mark.parametrize("arch", ["gru", "rnn"])
def test_other_cells_train(arch: str, corpus: str) -> None:
    result = train(_spec(arch=arch, max_steps=150, layers=2, dropout=0.1, l1=1e-6, weight_decay=0.01), corpus)
    assert result["val_loss"] < math.log(len(set(corpus)))


def test_same_seed_same_result(corpus: str) -> None:
    a = train(_spec(max_steps=30, seed=7), corpus)
    b = train(_spec(max_steps=30, seed=7), corpus)
    c = train(_spec(max_steps=30, seed=8), corpus)
    assert a["val_loss"] == b["val_loss"]
    assert c["val_loss"] != a["val_loss"]


def test_should_stop_ends_the_run_early(corpus: str) -> None:
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 5

    result = train(_spec(max_steps=1000), corpus, Callbacks(should_stop=stop))
    assert result["stopped_by"] == "requested" and result["steps"] == 5


def test_epochs_and_time_budget_stop_conditions(corpus: str) -> None:
    by_epochs = train(_spec(epochs=1.0), corpus)
    assert by_epochs["stopped_by"] == "epochs" and 0.9 <= by_epochs["epochs"] <= 1.01
    by_time = train(_spec(time_budget=1.0, max_steps=10**9), corpus)
    # No upper bound on the elapsed time: a loaded machine may take longer per step.
    assert by_time["stopped_by"] == "time_budget" and by_time["elapsed_s"] >= 1.0 and by_time["steps"] < 10**9


def test_early_stopping_on_validation_loss(corpus: str) -> None:
    # lr so small that validation loss cannot improve measurably between evaluations
    result = train(_spec(max_steps=10_000, eval_every=1, patience=2, lr=1e-9, warmup_steps=0), corpus)
    assert result["stopped_by"] == "early_stop" and result["steps"] < 100


def test_resume_continues_step_count_and_optimizer(corpus: str, tmp_path: Path) -> None:
    first = train(_spec(max_steps=40, eval_every=20), corpus, checkpoint_dir=tmp_path)
    assert checkpoint.read(tmp_path / LAST).step == 40
    resumed = train(_spec(max_steps=80, eval_every=20), corpus, checkpoint_dir=tmp_path, resume=tmp_path / LAST)
    assert resumed["steps"] == 80
    assert resumed["val_loss"] < first["val_loss"]
    # One window per step: the saved position is 80 windows in, across the epoch boundary.
    at = checkpoint.read(tmp_path / LAST).position
    windows_per_epoch = round(first["steps"] / first["epochs"])
    assert at["epoch"] * windows_per_epoch + at["batch"] == 80 and 0 <= at["batch"] < windows_per_epoch


def test_lr_schedule_warms_up_then_decays() -> None:
    spec = _spec(lr=1.0, warmup_steps=10, min_lr_ratio=0.1, max_steps=100)
    assert lr_at(spec, 0, 0.0) == pytest.approx(0.1)
    assert lr_at(spec, 9, 0.09) == pytest.approx(1.0, rel=0.05)
    assert lr_at(spec, 50, 0.5) == pytest.approx(0.55)
    assert lr_at(spec, 100, 1.0) == pytest.approx(0.1)


def test_non_finite_loss_fails_with_the_step_and_keeps_good_checkpoints(corpus: str, tmp_path: Path) -> None:
    # Decoupled weight decay of lr * wd = 100 flips and multiplies every weight by -99
    # per step: the weights overflow to inf within a few dozen steps.
    spec = _spec(lr=10.0, weight_decay=10.0, clip=None, warmup_steps=0, max_steps=500, checkpoint_every=2)
    with pytest.raises(NumericalError, match=r"by step \d+.*learning rate.*clip") as err:
        train(spec, corpus, checkpoint_dir=tmp_path)
    assert err.value.field == "lr"
    if (tmp_path / LAST).exists():  # whatever was saved was saved before the loss broke
        _, weights = checkpoint.load(tmp_path / LAST)
        assert all(torch.isfinite(w).all() for w in weights.values())


def test_periodic_checkpoints_follow_checkpoint_every(corpus: str, tmp_path: Path) -> None:
    seen: list[int] = []

    def watch_checkpoint(_: StepMetrics) -> None:
        if (tmp_path / LAST).exists():
            seen.append(checkpoint.read(tmp_path / LAST).step)

    train(_spec(max_steps=60, checkpoint_every=20, eval_every=1000), corpus, Callbacks(on_step=watch_checkpoint),
          tmp_path)
    assert {20, 40} <= set(seen)
