"""Ending a sweep early: cancel it (no more trials; those queued or running stopped) or
delete it (its trials' jobs and artifacts, its Optuna study and its records removed).

Both run under the sweep's lock (workers.sweep.locked), so that no advance is between
asking the study for a trial and recording its job while they look at the trials.

Delete goes in an order that a second `delete` can finish after the first died:

    state -> deleting      advance asks no more trials (it asks only while running), and
                           the reapers stop looking at the sweep (off rnnq:sweeps:active)
    trial jobs removed     records, metric streams, artifacts (jobs/<id>/); the uploaded
                           inputs are content-addressed and shared, so they stay
    study removed          its own journal's keys deleted (rnnq:optuna:sweep:<name>:*);
                           a sweep recorded before per-sweep journals is deleted through
                           Optuna from the shared, append-only journal, whose entries stay
    records removed        rnnq:sweep:<name>[:trials|:told], and the name from the index
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from workers import sweep as sweeps
from workers.artifacts import ArtifactStore
from workers.errors import JobNotFound, RnnqError
from workers.jobstore import FINAL_STATES, JobStore

_P = "rnnq:sweep:"
STOP_WAIT_SECONDS = 120.0  # how long `delete --force` waits for its cancelled trials to stop
POLL_SECONDS = 0.2  # how often it looks


class SweepBusy(RnnqError):
    """A sweep still has trials queued or running."""


def cancel(store: JobStore, name: str, send: sweeps.Send) -> list[str]:
    """Stop asking for trials and cancel every trial job still queued or running; returns
    the jobs cancelled (queued: at once; running: at their next step, with a checkpoint)."""
    sweeps.record(store, name)  # SweepNotFound before anything else
    cancelled = []
    with _held(store, name):
        if sweeps.record(store, name)["state"] == "running":  # a finished sweep stays finished
            sweeps.set_state(store, name, "cancelled")
        _fail_waiting(store, name)
        for job_id in sweeps.trials(store, name).values():
            if job_id and store.cancel(job_id) in ("cancelled", "requested"):
                cancelled.append(job_id)
    sweeps.advance(store, name, send)  # tells the study about the queued ones at once
    return cancelled


def _fail_waiting(store: JobStore, name: str) -> None:
    """Enqueued points the sweep will never ask for are failed in the study: Optuna would
    otherwise keep them WAITING, and hand them to whoever next asks the study for a trial
    (a script reading it with optuna.load_study, say). The leaderboard shows them cancelled."""
    from optuna.trial import TrialState

    journal = sweeps.storage(store.url, sweeps.record(store, name)["config"])
    study_id = journal.get_study_id_from_name(name)
    for t in journal.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        # Through the storage: Study.tell refuses a trial that is not running.
        journal.set_trial_state_values(journal.get_trial_id_from_study_id_trial_number(study_id, t.number),
                                       TrialState.FAIL)


def unfinished(store: JobStore, name: str) -> list[str]:
    """The sweep's trial jobs that are queued or running."""
    ids = [job_id for job_id in sweeps.trials(store, name).values() if job_id]
    rows = store.fields(ids, "state") if ids else []
    return [job_id for job_id, row in zip(ids, rows, strict=True) if row["state"] not in (None, *FINAL_STATES)]


def delete(store: JobStore, artifacts: ArtifactStore, name: str, send: sweeps.Send, force: bool = False,
           wait: float = STOP_WAIT_SECONDS) -> list[str]:
    """Remove the sweep, its trials' jobs and artifacts and its study; returns the jobs
    removed. Refused (SweepBusy) while a trial is queued or running, unless `force`:
    then the sweep is cancelled first and its trials given `wait` seconds to stop."""
    try:
        sweeps.record(store, name)
    except sweeps.SweepNotFound:
        if sweeps.half_made(store, name):  # its submit died before the record: the name and maybe a study
            sweeps.remove_half_made(store, name, {"name": name, "journal": "own"})
            return []
        raise
    if force:
        cancel(store, name, send)
        _wait_stopped(store, name, wait)
    with _held(store, name):
        busy = unfinished(store, name)
        if busy:
            raise SweepBusy(f"sweep {name!r} has {len(busy)} trial(s) queued or running: cancel it first "
                            f"(rnnq sweep cancel {name}) or delete it with --force")
        sweeps.set_state(store, name, "deleting")
        store.call(lambda: store.redis.srem(sweeps.ACTIVE, name))  # the reapers leave it alone
        jobs = [job_id for job_id in sweeps.trials(store, name).values() if job_id]
        for job_id in jobs:
            _delete_job(store, artifacts, job_id)
        _delete_study(store, name)
        store.call(lambda: store.redis.delete(_P + name, _P + name + ":trials", _P + name + ":told"))
        store.call(lambda: store.redis.zrem(sweeps.SWEEPS, name))
    return jobs


def _wait_stopped(store: JobStore, name: str, wait: float) -> None:
    """Until no trial is queued or running, re-cancelling as it goes: a trial reaped from
    a dead worker goes back to the queue, where a cancel ends it at once."""
    deadline = time.monotonic() + wait
    while busy := unfinished(store, name):
        if time.monotonic() >= deadline:
            raise SweepBusy(f"sweep {name!r}: {len(busy)} cancelled trial(s) still running after {wait:g} s "
                            f"(a worker stops a trial at its next step); try again")
        for job_id in busy:
            store.cancel(job_id)
        time.sleep(POLL_SECONDS)


def _delete_job(store: JobStore, artifacts: ArtifactStore, job_id: str) -> None:
    try:
        store.delete(job_id)
    except JobNotFound:  # deleted by hand, or by a delete that died half-way
        pass
    artifacts.delete_prefix(f"jobs/{job_id}")


def _delete_study(store: JobStore, name: str) -> None:
    sweeps.delete_study(store, name, sweeps.record(store, name)["config"])


@contextmanager
def _held(store: JobStore, name: str) -> Iterator[None]:
    """The sweep's lock, waited for up to LOCK_SECONDS; RnnqError if it is not let go."""
    with sweeps.locked(store, name, wait=sweeps.LOCK_SECONDS) as held:
        if not held:
            raise RnnqError(f"sweep {name!r} is locked by a process that does not let go; try again")
        yield


__all__ = ["SweepBusy", "cancel", "delete", "unfinished"]
