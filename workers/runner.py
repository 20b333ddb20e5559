"""What a worker does with a job: take its lease, load spec and inputs, call rnn_tasks,
store results.

Everything a job can do wrong ends here as a failed record with a readable reason and
the traceback; nothing propagates into Celery, so a bad job never takes down the
worker or its other jobs. torch is imported only inside the job functions.

A training job stops early, at its next step, for three reasons, each checked at most
once a second: the user cancelled it (ends `cancelled`), its worker is shutting down
(checkpoint, back to the queue, resumed elsewhere), or it lost its lease (another
process owns it now: leave the record alone).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

from rnn_tasks.spec import EvalSpec, GenerateSpec, PredictSpec, TrainBase, TrainSpec, train_spec_from_dict
from workers import dispatch, metrics
from workers import settings as settings_mod
from workers.artifacts import ArtifactStore, LocalArtifactStore, job_key
from workers.jobstore import Job, JobStore

log = logging.getLogger("rnnq.worker")

Outcome = tuple[dict[str, Any], dict[str, str]]  # result summary, artifact keys
CHECK_SECONDS = 1.0  # how often a running job looks for cancel, drain and lease loss
FINISH_RETRY_SECONDS = 120.0  # keep trying to record a result while Redis restarts


class Lease:
    """Holds a job's lease: renewed from a thread every third of its TTL."""

    def __init__(self, store: JobStore, job_id: str, token: str, seconds: float) -> None:
        self.store, self.job_id, self.token, self.seconds = store, job_id, token, seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.store.renew_lease(self.job_id, self.token, self.seconds):
                    log.error("job %s: lease lost; stopping this copy", self.job_id)
                    self.lost = True
                    return
            except Exception:
                log.warning("job %s: could not renew lease", self.job_id, exc_info=True)

    def __enter__(self) -> Lease:  # noqa: PYI034 - final in practice
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if not self.lost:
            _retry(lambda: self.store.release_lease(self.job_id, self.token), "release lease")


@dataclass
class _Control:
    """Why a job should stop early; polled by the training loop's should_stop."""

    store: JobStore
    job_id: str
    node: str
    lease: Lease
    reason: str | None = None
    _last: float = 0.0

    def should_stop(self) -> bool:
        if self.reason is None and time.monotonic() - self._last >= CHECK_SECONDS:
            self._last = time.monotonic()
            try:
                if self.lease.lost:
                    self.reason = "lease_lost"
                elif self.store.cancel_requested(self.job_id):
                    self.reason = "cancelled"
                elif self.store.draining(self.node):
                    self.reason = "draining"
            except Exception:
                log.warning("job %s: could not check for stop requests", self.job_id, exc_info=True)
        return self.reason is not None


def run(kind: str, job_id: str, worker: str) -> None:
    s = settings_mod.resolve()
    store = JobStore(s.redis_url)
    artifacts = LocalArtifactStore(s.artifacts)
    token = f"{worker}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    state = store.start(job_id, worker, token, s.lease_seconds, s.max_worker_losses)
    if state != "running":
        log.warning("job %s is %s; not running this delivery", job_id, state or "unknown (deleted?)")
        return
    store.update(job_id, pid=os.getpid())
    job = store.get(job_id)
    log.info("job %s (%s) started, attempt %d", job_id, kind, job.attempts)
    began = time.monotonic()
    metrics.job_started(kind, job.queue, worker, time.time() - job.created_at if job.attempts == 1 else None)
    ended: str | None = None
    try:
        with Lease(store, job_id, token, s.lease_seconds) as lease:
            control = _Control(store, job_id, worker, lease)
            try:
                result, keys = _KINDS[kind](job, store, artifacts, control)
            except Exception as exc:
                log.exception("job %s failed", job_id)
                reason, trace = _reason(exc), traceback.format_exc()
                if not lease.lost:
                    _retry(lambda: store.finish(job_id, "failed", error=reason, traceback=trace), "record failure")
                    ended = "failed"
                return
            ended = _settle(store, job, control, result, keys)
    finally:
        metrics.job_ended(kind, job.queue, worker, ended, time.monotonic() - began)


def _settle(store: JobStore, job: Job, control: _Control, result: dict[str, Any], keys: dict[str, str]) -> str | None:
    """Record how the job ended, according to why it stopped; returns its final state,
    None when it did not end here."""
    if control.reason == "lease_lost":
        log.warning("job %s: another worker owns it now; result of this copy dropped", job.id)
        return None
    if control.reason == "draining":
        log.info("job %s: worker shutting down; checkpointed and handed back to the queue", job.id)
        _retry(lambda: store.hand_back(job.id), "hand back")
        dispatch.send_job(job.id, job.kind, job.queue)
        return None
    if control.reason == "cancelled":
        _retry(lambda: store.finish(job.id, "cancelled", result=result, artifacts=keys), "record cancel")
        return "cancelled"
    _retry(lambda: store.finish(job.id, "succeeded", result=result, artifacts=keys), "record result")
    log.info("job %s succeeded", job.id)
    return "succeeded"


def _retry(action: Callable[[], object], what: str) -> None:
    """Retry a record update while Redis is unreachable (a restart), up to a limit."""
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    while True:
        try:
            action()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            log.warning("could not %s; retrying", what, exc_info=True)
            time.sleep(1.0)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def _reporter(store: JobStore, job: Job, worker: str) -> Callable[[Any], None]:
    """on_step for the training loop: progress goes to the job's event stream, tagged
    with the attempt (so the log shows which delivery trained which steps), and to the
    worker's Prometheus counters."""
    meter = metrics.TrainingMeter(job.kind, job.queue, worker)

    def on_step(report: Any) -> None:
        meter.report(report.step, report.tokens, report.elapsed, report.device,
                     None if report.memory_allocated is None else (report.memory_allocated, report.memory_reserved))
        event = {k: v for k, v in asdict(report).items() if v is not None}
        event["time"] = time.time()
        event["attempt"] = job.attempts
        try:
            store.add_event(job.id, event)
        except Exception:
            log.warning("could not record progress of job %s", job.id, exc_info=True)

    return on_step


S = TypeVar("S", TrainBase, GenerateSpec, PredictSpec, EvalSpec)


def _on_worker_device(spec: S) -> S:
    """A job that asked for device "auto" runs on the worker's --device, if it set one."""
    device = settings_mod.resolve().worker_device
    if device and spec.device == "auto":
        return replace(spec, device=device)
    return spec


def _train(job: Job, store: JobStore, artifacts: ArtifactStore, control: _Control) -> Outcome:
    from rnn_tasks.train import BEST, LAST, Callbacks

    spec = _on_worker_device(train_spec_from_dict(job.spec))
    checkpoint_dir = artifacts.local_path(job_key(job.id, BEST)).parent
    resume = checkpoint_dir / LAST if artifacts.exists(job_key(job.id, LAST)) else None
    if resume is not None:
        step = _checkpoint_step(spec, resume)
        store.update(job.id, resumed_from=step)
        log.info("job %s resumes from its checkpoint at step %d", job.id, step)
    callbacks = Callbacks(on_step=_reporter(store, job, control.node), should_stop=control.should_stop)
    if isinstance(spec, TrainSpec):
        summary = _train_lm(spec, artifacts, callbacks, checkpoint_dir, resume, store, job)
    else:  # every other task: its module's train(), same callbacks and checkpoints
        files = {name: artifacts.get_bytes(key) for name, key in spec.input_keys().items()}
        summary = _task_module(spec.task).train(spec, files, callbacks, checkpoint_dir, resume)
    summary["stopped_by"] = control.reason or summary.get("stopped_by")
    return summary, {"checkpoint": job_key(job.id, BEST), "last": job_key(job.id, LAST)}


def _checkpoint_step(spec: TrainBase, path: Any) -> int:
    if isinstance(spec, TrainSpec):
        from rnn_tasks.checkpoint import read_meta

        return read_meta(path).step
    from rnn_tasks.task_checkpoint import read

    return read(path).step


def _task_module(task: str) -> Any:
    import importlib

    return importlib.import_module(f"rnn_tasks.{task}.task")


def _train_lm(spec: TrainSpec, artifacts: ArtifactStore, callbacks: Any, checkpoint_dir: Any, resume: Any,
              store: JobStore, job: Job) -> dict[str, Any]:
    from rnn_tasks.checkpoint import read_meta
    from rnn_tasks.train import BEST, train

    text = artifacts.get_bytes(spec.data).decode("utf-8")
    result = train(spec, text, callbacks, checkpoint_dir=checkpoint_dir, resume=resume)
    summary = {
        "steps": result.steps,
        "epochs": round(result.epochs, 4),
        "tokens": result.tokens,
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "best_val_loss": result.best_val_loss,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "elapsed_s": round(result.elapsed, 2),
        "stopped_by": result.stopped_by,
        "parameters": result.parameters,
        "vocab_size": result.vocab_size,
        "device": result.device,
    }
    for figure in ("perplexity", "bpc"):  # by tokenizer: perplexity per token, bits per character
        if getattr(result, figure, None) is not None:
            summary[figure] = getattr(result, figure)
    store.update(job.id, vocab=read_meta(checkpoint_dir / BEST).vocab)
    return summary


def _source_checkpoint(store: JobStore, artifacts: ArtifactStore, source_id: str) -> tuple[Job, Any]:
    source = store.get(source_id)
    if "checkpoint" not in source.artifacts:
        raise ValueError(f"training job {source_id} has no checkpoint (state {source.state})")
    return source, artifacts.local_path(source.artifacts["checkpoint"])


def _predict(job: Job, store: JobStore, artifacts: ArtifactStore, control: _Control) -> Outcome:
    spec = _on_worker_device(PredictSpec.from_dict(job.spec))
    source, path = _source_checkpoint(store, artifacts, spec.source)
    task = source.spec.get("task", "lm")
    if spec.input is not None:
        data = artifacts.get_bytes(spec.input)
    elif spec.texts:
        data = "\n".join(spec.texts).encode("utf-8")
    else:  # a forecast continues the series it was trained on
        data = artifacts.get_bytes(source.spec["data"])
    options: dict[str, Any] = {}  # what each task's predict() takes
    if task == "classify":
        options["format"] = "lines" if spec.texts else spec.format
    elif task == "translate":
        options.update({k: v for k, v in (("beam", spec.beam), ("max_len", spec.max_len)) if v is not None})
    elif task == "transcribe":
        options.update(_decoding(store, artifacts, spec))
    result = _task_module(task).predict(path, data, options, spec.device)
    key = job_key(job.id, "predictions.json")
    artifacts.put_bytes(key, json.dumps(result, indent=1).encode())
    return {**result, "source": spec.source, "task": task}, {"predictions_file": key}


def _decoding(store: JobStore, artifacts: ArtifactStore, spec: PredictSpec | EvalSpec) -> dict[str, Any]:
    """Beam width and language-model fusion options (the LM as its checkpoint's path)."""
    options = {k: v for k, v in (("beam", spec.beam), ("lm_weight", spec.lm_weight), ("lm_bonus", spec.lm_bonus))
               if v is not None}
    if spec.lm is not None:
        options["lm"] = _source_checkpoint(store, artifacts, spec.lm)[1]
    return options


def _eval(job: Job, store: JobStore, artifacts: ArtifactStore, control: _Control) -> Outcome:
    spec = _on_worker_device(EvalSpec.from_dict(job.spec))
    source, path = _source_checkpoint(store, artifacts, spec.source)
    task = source.spec.get("task", "lm")
    files = {"data": artifacts.get_bytes(spec.data)}
    if spec.target is not None:
        files["target"] = artifacts.get_bytes(spec.target)
    if task == "lm":
        from rnn_tasks import lm_task

        figures = lm_task.evaluate(path, files, spec.device)
    else:
        module = _task_module(task)
        figures = module.evaluate(path, files, spec.device) if spec.beam is None and spec.lm is None else \
            module.evaluate(path, files, spec.device, **_decoding(store, artifacts, spec))
    return {**figures, "source": spec.source, "task": task}, {}


def _generate(job: Job, store: JobStore, artifacts: ArtifactStore, control: _Control) -> Outcome:
    from rnn_tasks import checkpoint
    from rnn_tasks import device as devices
    from rnn_tasks.sample import SampleOptions, generate

    spec = _on_worker_device(GenerateSpec.from_dict(job.spec))
    source = store.get(spec.source)
    if "checkpoint" not in source.artifacts:
        raise ValueError(f"training job {spec.source} has no checkpoint (state {source.state})")
    dev = devices.resolve(spec.device)
    devices.configure(dev)
    meta, model = checkpoint.load_model(artifacts.local_path(source.artifacts["checkpoint"]), dev)
    opts = SampleOptions(
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        top_k=spec.top_k,
        top_p=spec.top_p,
        greedy=spec.greedy,
        seed=spec.seed,
    )
    start = time.perf_counter()
    texts = generate(model, meta.tokenizer(), list(spec.prompts), opts)
    elapsed = time.perf_counter() - start
    key = job_key(job.id, "samples.json")
    artifacts.put_bytes(key, json.dumps({"prompts": list(spec.prompts), "texts": texts}, indent=1).encode())
    tokens = len(texts) * spec.max_tokens
    metrics.tokens_generated(job.kind, job.queue, control.node, tokens)
    summary = {
        "texts": texts,
        "prompts": list(spec.prompts),
        "tokens": tokens,
        "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
        "source": spec.source,
        "device": str(dev),
    }
    return summary, {"samples": key}


_KINDS: dict[str, Callable[[Job, JobStore, ArtifactStore, _Control], Outcome]] = {
    "train": _train,
    "generate": _generate,
    "predict": _predict,
    "eval": _eval,
}
