"""Submitting jobs: validate everything first, then upload, record and enqueue.

Nothing reaches Redis or the artifact store until the spec and the input data have
passed every check, so a rejected job leaves no trace.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import Celery

from rnn_tasks.spec import GenerateSpec, SpecError, TrainSpec, min_corpus_chars
from workers import dispatch
from workers.app import TASK_QUEUES
from workers.artifacts import ArtifactStore, put_corpus
from workers.errors import InvalidJob
from workers.jobstore import Job, JobStore

_PENDING_DATA = "pending/corpus"  # placeholder key until the corpus is uploaded


def read_corpus(path: Path, encoding: str, max_bytes: int) -> str:
    """The corpus text, or InvalidJob naming what is wrong with the file."""
    if not path.exists():
        raise InvalidJob("DATA", f"{path} does not exist")
    if not path.is_file():
        raise InvalidJob("DATA", f"{path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise InvalidJob("DATA", f"{path} is empty")
    if size > max_bytes:
        raise InvalidJob("DATA", f"{path} is {size} bytes, over the limit of {max_bytes} (RNNQ_MAX_CORPUS_BYTES)")
    try:
        return path.read_bytes().decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidJob("DATA", f"{path} is not valid {encoding} ({exc.reason} at byte {exc.start}); pass --encoding") from None
    except LookupError:
        raise InvalidJob("--encoding", f"unknown encoding {encoding!r}") from None


def build_train_spec(fields: dict[str, Any]) -> TrainSpec:
    """A TrainSpec from CLI fields (data filled in after upload); SpecError names the field."""
    return TrainSpec.from_dict({"data": _PENDING_DATA, **fields})


def check_train(corpus: Path, spec: TrainSpec, encoding: str = "utf-8", max_bytes: int = 1 << 30) -> str:
    """The corpus text, after checking it can train `spec`; InvalidJob otherwise."""
    text = read_corpus(corpus, encoding, max_bytes)
    need = min_corpus_chars(spec.seq_len, spec.val_fraction)
    if len(text) < need:
        raise InvalidJob(
            "DATA",
            f"{corpus} has {len(text)} characters; with seq_len {spec.seq_len} and val_fraction "
            f"{spec.val_fraction} it needs at least {need}",
        )
    return text


def submit_train(store: JobStore, artifacts: ArtifactStore, app: Celery, text: str, spec: TrainSpec, *,
                 queue: str | None = None, name: str | None = None) -> Job:
    """Upload the (checked) corpus, record the job and send it to its queue."""
    store.ping()
    spec = replace(spec, data=put_corpus(artifacts, text))
    return _enqueue(store, app, "train", spec.to_dict(), queue, name)


def submit_generate(store: JobStore, app: Celery, source: str, fields: dict[str, Any], queue: str | None = None,
                    name: str | None = None) -> Job:
    """Sample from a finished training job, given by id or name."""
    job = store.resolve(source)
    if job.kind != "train":
        raise InvalidJob("JOB_OR_NAME", f"job {job.id} is a {job.kind} job, not a training job")
    if job.state != "succeeded" or "checkpoint" not in job.artifacts:
        raise InvalidJob("JOB_OR_NAME", f"training job {job.id} is {job.state}; generate needs a succeeded one")
    spec = GenerateSpec.from_dict({"source": job.id, **fields})
    if job.vocab is not None:
        vocab = set(job.vocab)
        for i, prompt in enumerate(spec.prompts):
            unknown = "".join(dict.fromkeys(c for c in prompt if c not in vocab))
            if unknown:
                raise InvalidJob(f"--prompt #{i + 1}", f"characters the model never saw in training: {unknown!r}")
    return _enqueue(store, app, "generate", spec.to_dict(), queue, name)


def _enqueue(store: JobStore, app: Celery, kind: str, spec: dict[str, Any], queue: str | None, name: str | None) -> Job:
    task = f"rnnq.{kind}"
    queue = queue or TASK_QUEUES[task]
    job = store.create(kind, spec, queue, name=name)
    try:
        dispatch.send_job(job.id, kind, queue, app)
    except Exception as exc:
        store.finish(job.id, "failed", error=f"could not enqueue: {exc}")
        raise
    return job


__all__ = ["SpecError", "build_train_spec", "check_train", "read_corpus", "submit_generate", "submit_train"]
