"""What a worker does with a job: load its spec and inputs, call rnn_tasks, store results.

Everything a job can do wrong ends here as a failed record with a readable reason and
the traceback; nothing propagates into Celery, so a bad job never takes down the
worker or its other jobs. torch is imported only inside the job functions.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, TypeVar

from rnn_tasks.spec import GenerateSpec, TrainSpec
from workers import settings as settings_mod
from workers.artifacts import ArtifactStore, LocalArtifactStore, job_key
from workers.jobstore import Job, JobStore

log = logging.getLogger("rnnq.worker")

Outcome = tuple[dict[str, Any], dict[str, str]]  # result summary, artifact keys


def run(kind: str, job_id: str, worker: str) -> None:
    s = settings_mod.resolve()
    store = JobStore(s.redis_url)
    artifacts = LocalArtifactStore(s.artifacts)
    state = store.start(job_id, worker)
    if state != "running":
        log.warning("job %s is %s; not running it", job_id, state or "unknown (deleted?)")
        return
    job = store.get(job_id)
    log.info("job %s (%s) started, attempt %d", job_id, kind, job.attempts)
    try:
        result, keys = _KINDS[kind](job, store, artifacts)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        store.finish(job_id, "failed", error=_reason(exc), traceback=traceback.format_exc())
        return
    store.finish(job_id, "succeeded", result=result, artifacts=keys)
    log.info("job %s succeeded", job_id)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


class _Reporter:
    """Training callbacks wired to the job's metric stream."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id

    def on_step(self, metrics: Any) -> None:
        event = {k: v for k, v in asdict(metrics).items() if v is not None}
        event["time"] = time.time()
        try:
            self.store.add_event(self.job_id, event)
        except Exception:
            log.warning("could not record progress of job %s", self.job_id, exc_info=True)

    def should_stop(self) -> bool:
        return False


S = TypeVar("S", TrainSpec, GenerateSpec)


def _on_worker_device(spec: S) -> S:
    """A job that asked for device "auto" runs on the worker's --device, if it set one."""
    device = settings_mod.resolve().worker_device
    if device and spec.device == "auto":
        return replace(spec, device=device)
    return spec


def _train(job: Job, store: JobStore, artifacts: ArtifactStore) -> Outcome:
    from rnn_tasks.train import BEST, LAST, Callbacks, train

    spec = _on_worker_device(TrainSpec.from_dict(job.spec))
    text = artifacts.get_bytes(spec.data).decode("utf-8")
    checkpoint_dir = artifacts.local_path(job_key(job.id, BEST)).parent
    reporter = _Reporter(store, job.id)
    result = train(spec, text, Callbacks(reporter.on_step, reporter.should_stop), checkpoint_dir=checkpoint_dir)
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
    from rnn_tasks.checkpoint import read_meta

    store.update(job.id, vocab=read_meta(checkpoint_dir / BEST).vocab)
    return summary, {"checkpoint": job_key(job.id, BEST), "last": job_key(job.id, LAST)}


def _generate(job: Job, store: JobStore, artifacts: ArtifactStore) -> Outcome:
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
    summary = {
        "texts": texts,
        "prompts": list(spec.prompts),
        "tokens": tokens,
        "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
        "source": spec.source,
        "device": str(dev),
    }
    return summary, {"samples": key}


_KINDS: dict[str, Callable[[Job, JobStore, ArtifactStore], Outcome]] = {"train": _train, "generate": _generate}
