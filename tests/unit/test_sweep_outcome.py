"""How a trial job's end reads to its Optuna study, and the figures a task reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from rnn_tasks.loop import Callbacks, StepMetrics
from workers.jobstore import Job
from workers.sweep import figure, outcome


def _job(state: str, result: dict[str, object] | None = None) -> Job:
    return Job(id="0" * 12, kind="train", state=state, spec={}, queue="train", created_at=0.0, result=result,
               sweep="s", trial=3)


@pytest.mark.parametrize(("job", "objective", "expected"), [
    (_job("succeeded", {"best_val_loss": 1.25, "val_loss": 1.5, "stopped_by": "max_steps"}), "val_loss",
     (TrialState.COMPLETE, 1.25)),  # the best checkpoint's figure, not the last evaluation's
    (_job("succeeded", {"accuracy": 0.75, "stopped_by": "epochs"}), "accuracy", (TrialState.COMPLETE, 0.75)),
    (_job("succeeded", {"metrics": {"rmse": 3.5}, "stopped_by": "time_budget"}), "rmse", (TrialState.COMPLETE, 3.5)),
    (_job("succeeded", {"best_val_loss": 2.0, "stopped_by": "pruned"}), "val_loss", (TrialState.PRUNED, None)),
    (_job("cancelled", {"best_val_loss": 2.0, "stopped_by": "cancelled"}), "val_loss", (TrialState.PRUNED, None)),
    (_job("failed"), "val_loss", (TrialState.FAIL, None)),
    (None, "val_loss", (TrialState.FAIL, None)),  # deleted by hand
    (_job("succeeded", {"best_val_loss": float("nan")}), "val_loss", (TrialState.FAIL, None)),
    (_job("succeeded", {"val_loss": 2.0}), "bleu", (TrialState.FAIL, None)),
])
def test_outcome(job: Job | None, objective: str, expected: tuple[TrialState, float | None]) -> None:
    assert outcome(job, objective) == expected


def test_figure_prefers_the_best_checkpoint() -> None:
    assert figure({"best_val_loss": 1.0, "val_loss": 2.0}, "val_loss") == 1.0
    assert figure({"val_loss": 2.0}, "val_loss") == 2.0
    assert figure({"accuracy": None, "metrics": {"accuracy": 0.5}}, "accuracy") is None


def test_task_evaluations_carry_their_other_figures(tmp_path: Path) -> None:
    # The worker prunes on accuracy, BLEU or RMSE from these reports: the loop must pass them on.
    from rnn_tasks import loop
    from tests.unit.test_loop import Toy, spec

    reports: list[StepMetrics] = []
    loop.fit(spec(max_steps=20), Toy(), Callbacks(on_step=reports.append), checkpoint_dir=tmp_path)
    evaluations = [r for r in reports if r.val_loss is not None]
    assert [r.step for r in evaluations] == [10, 20]
    assert all(r.figures is not None and set(r.figures) == set(Toy().evaluate()) - {"val_loss"} for r in evaluations)
    assert all(r.figures is None for r in reports if r.val_loss is None)


def test_studies_go_to_an_rdb_where_the_operator_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from workers.sweep import storage

    monkeypatch.setenv("RNNQ_SWEEP_STORAGE", f"sqlite:///{tmp_path / 'studies.db'}")
    rdb = storage("redis://127.0.0.1:1/0", {"name": "s", "journal": "own"})
    assert isinstance(rdb, optuna.storages.RDBStorage)
    study = optuna.create_study(study_name="s", storage=rdb)
    study.tell(study.ask(), 1.0)
    assert optuna.load_study(study_name="s", storage=storage("redis://unused", {"name": "s"})).best_value == 1.0
