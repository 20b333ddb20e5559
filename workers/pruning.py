"""The worker's side of a sweep: each evaluation's figure goes to the job's Optuna trial,
which may prune it. rnn_tasks knows nothing of this: it is a wrapper around on_step."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workers.jobstore import Job, JobStore
from workers.sweep import load_study, record, storage

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("rnnq.sweep")


class Pruning:
    """Wraps a trial job's on_step: each evaluation's figure goes to the trial; when the
    pruner says so, `stop(reason)` is called and the job ends at its next step check.
    Never breaks the job: an Optuna or Redis error is logged and training goes on."""

    def __init__(self, store: JobStore, job: Job, owned: Callable[[], bool], stop: Callable[[], None]) -> None:
        self.store, self.job, self.owned, self.stop = store, job, owned, stop
        self._trial: optuna.Trial | None = None
        self._objective = ""
        self._seconds = False  # the rungs count training seconds, not steps (workers/sweepfile._resource)

    def _open(self) -> optuna.Trial:
        if self._trial is None:
            import optuna

            assert self.job.sweep is not None and self.job.trial is not None
            config = record(self.store, self.job.sweep)["config"]
            journal = storage(self.store.url, config)
            study = load_study(self.store, self.job.sweep, config, journal=journal)
            study_id = journal.get_study_id_from_name(self.job.sweep)
            trial_id = journal.get_trial_id_from_study_id_trial_number(study_id, self.job.trial)
            self._trial, self._objective = optuna.Trial(study, trial_id), config["objective"]
            self._seconds = config["pruner_options"].get("resource") == "seconds"
        return self._trial

    def wrap(self, on_step: Callable[[Any], None]) -> Callable[[Any], None]:
        def report(metrics: Any) -> None:
            on_step(metrics)
            if metrics.val_loss is None or not self.owned():  # not an evaluation, or no longer our job
                return
            try:
                trial = self._open()
                value = metrics.val_loss if self._objective == "val_loss" else (metrics.figures or {}).get(
                    self._objective)
                if value is None or not math.isfinite(value):
                    return
                # a resumed attempt's repeat of a step (or second) is ignored; elapsed survives a resume
                at = int(metrics.elapsed) if self._seconds else metrics.step
                trial.report(float(value), at)
                if trial.should_prune():
                    log.info("job %s: trial %d pruned at %s %d (%s %.4g)", self.job.id, trial.number,
                             "second" if self._seconds else "step", at, self._objective, value)
                    self.stop()
            except Exception:  # a sweep's bookkeeping never fails a job
                log.warning("job %s: could not report to its trial", self.job.id, exc_info=True)

        return report
