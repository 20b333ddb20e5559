"""Reading sweeps: the list of them, a sweep's leaderboard, its best trial, and Optuna's
plots of it (workers.sweep). The list reads only rnnq's records, never the studies."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from workers.errors import JobNotFound, RnnqError
from workers.jobstore import Job, JobStore
from workers.sweep import SWEEPS, SweepNotFound, load_study, record, trials, unrecorded_state

if TYPE_CHECKING:
    import optuna


@dataclass
class TrialRow:
    """One line of the leaderboard."""

    trial: int
    job_id: str | None
    state: str  # the job's state, or pruned (stopped by the pruner) / invalid (no job) / waiting (enqueued)
    params: dict[str, Any]
    value: float | None  # the trial's figure: final when complete, else the best reported so far
    steps: int | None
    enqueued: bool = False  # a point of the sweep file's `enqueue`, not drawn by the sampler

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


TRIAL_STATES = ("queued", "running", "succeeded", "pruned", "failed", "cancelled")


@dataclass
class SweepRow:
    """One line of `rnnq sweep list`."""

    name: str
    # running | finished | cancelled | deleting; or, for a name with no record yet, creating
    # (its submit is at work) or half-made (its submit died: `rnnq sweep delete` frees it)
    state: str
    created_at: float  # of a name with no record: when it was taken
    objective: str | None
    planned: int  # trials the sweep asks for in all
    trials: dict[str, int]  # trials asked so far, by TRIAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return {"sweep": self.name, "state": self.state, "created_at": self.created_at, "objective": self.objective,
                "trials_planned": self.planned, "trials": self.trials}


def summaries(store: JobStore, limit: int = 50) -> list[SweepRow]:
    """The newest `limit` sweeps, newest first, with their trials counted by state."""
    names = store.call(lambda: cast(list[tuple[str, float]], store.redis.zrevrange(SWEEPS, 0, limit - 1,
                                                                                 withscores=True)))
    rows = []
    for name, taken_at in names:
        try:
            rec = record(store, name)
        except SweepNotFound:
            state = unrecorded_state(store, name)
            if state is not None:  # None: deleted between the two reads
                rows.append(SweepRow(name, state, taken_at, None, 0, dict.fromkeys(TRIAL_STATES, 0)))
            continue
        counts = Counter(trial_states(store, name).values())
        rows.append(SweepRow(name, rec["state"], rec["created_at"], rec["config"]["objective"], rec["config"]["trials"],
                             {state: counts.get(state, 0) for state in TRIAL_STATES}))
    return rows


def trial_states(store: JobStore, name: str) -> dict[int, str]:
    """Each trial's state, by trial number: its job's, or pruned (stopped by the pruner);
    failed when it has no job (an invalid sampled spec) or its job was deleted, as the
    study records it."""
    known = trials(store, name)
    ids = [job_id for job_id in known.values() if job_id]
    rows = dict(zip(ids, store.fields(ids, "state", "result"), strict=True)) if ids else {}
    states = {}
    for number, job_id in known.items():
        row = rows.get(job_id, {})
        state = row.get("state") or "failed"
        if state == "succeeded" and json.loads(row.get("result") or "{}").get("stopped_by") == "pruned":
            state = "pruned"
        states[number] = state
    return states


def leaderboard(store: JobStore, name: str) -> tuple[dict[str, Any], list[TrialRow]]:
    """The sweep's record and its trials, best figure first (trials without one last)."""
    from optuna.trial import TrialState

    rec = record(store, name)
    study = load_study(store, name, rec["config"])
    known = trials(store, name)
    jobs = {job_id: job for job_id in known.values() if job_id for job in _get(store, job_id)}
    maximize = rec["config"]["direction"] == "maximize"
    rows = []
    for t in study.get_trials(deepcopy=False):
        enqueued = "fixed_params" in t.system_attrs
        if t.number not in known and enqueued:  # an enqueued point not asked for yet, or never to be
            state = "waiting" if t.state == TrialState.WAITING and rec["state"] == "running" else "cancelled"
            rows.append(TrialRow(t.number, None, state, dict(t.system_attrs["fixed_params"]), None, None, True))
            continue
        job_id = known.get(t.number) or None
        job = jobs.get(job_id) if job_id else None
        value = t.value if t.value is not None else _best(list(t.intermediate_values.values()), maximize)
        rows.append(TrialRow(t.number, job_id, _state(job, job_id), dict(t.params), value, _steps(job), enqueued))

    def order(row: TrialRow) -> tuple[int, float, int]:
        if row.value is None:
            return (1, 0.0, row.trial)
        return (0, -row.value if maximize else row.value, row.trial)

    return rec, sorted(rows, key=order)


def _get(store: JobStore, job_id: str) -> list[Job]:
    try:
        return [store.get(job_id)]
    except JobNotFound:
        return []


def _best(values: list[float], maximize: bool) -> float | None:
    return (max(values) if maximize else min(values)) if values else None


def _state(job: Job | None, job_id: str | None) -> str:
    if not job_id:
        return "invalid"
    if job is None:
        return "deleted"
    if job.state == "succeeded" and (job.result or {}).get("stopped_by") == "pruned":
        return "pruned"
    return job.state


def _steps(job: Job | None) -> int | None:
    if job is None:
        return None
    if job.result and "steps" in job.result:
        return int(job.result["steps"])
    return int(job.progress["step"]) if job.progress and "step" in job.progress else None


def best(store: JobStore, name: str) -> str:
    """The job id of the completed trial with the best figure."""
    import optuna

    rec = record(store, name)
    study = load_study(store, name, rec["config"])
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        raise RnnqError(f"sweep {name!r} has no completed trial yet")
    job_id = trials(store, name).get(study.best_trial.number)
    if not job_id:
        raise RnnqError(f"sweep {name!r}: the best trial has no job")
    return job_id


def plot(store: JobStore, name: str, out: Path) -> list[Path]:
    """Optuna's matplotlib figures as PNGs: optimisation history, intermediate values
    (pruned trials included) and parameter importances (with two completed trials or more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as views

    study = load_study(store, name)
    seconds = record(store, name)["config"]["pruner_options"].get("resource") == "seconds"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    figures: list[tuple[str, Callable[[optuna.Study], Any]]] = [
        ("history", views.plot_optimization_history), ("intermediate", views.plot_intermediate_values)]
    if len(complete) >= 2:
        figures.append(("importances", views.plot_param_importances))
    for label, draw in figures:
        ax = draw(study)
        if label == "intermediate" and seconds:
            ax.set_xlabel("Training seconds")
        path = out / f"{name}-{label}.png"
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        written.append(path)
    return written
