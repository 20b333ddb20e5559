"""Submitting jobs: validate everything first, then upload, record and enqueue.

Nothing reaches Redis or the artifact store until the spec and the input data have
passed every check, so a rejected job leaves no trace.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import Celery

from rnn_tasks import windows
from rnn_tasks.spec import (
    EvalSpec,
    GenerateSpec,
    PredictSpec,
    SpecError,
    TrainBase,
    TrainSpec,
    train_spec_class,
)
from workers import dispatch
from workers.app import TASK_QUEUES
from workers.artifacts import ArtifactStore, put_corpus, put_input
from workers.errors import InvalidJob, UploadFailed
from workers.jobstore import Job, JobStore
from workers.settings import CORPUS_MEMORY_PER_CHAR, DEFAULT_MAX_CORPUS_BYTES, DEFAULT_WORKER_MEMORY_BYTES

_PENDING_DATA = "pending/corpus"  # placeholder key until the corpus is uploaded


def read_input(path: Path, max_bytes: int, field: str = "DATA") -> bytes:
    """An input file's bytes, or InvalidJob naming what is wrong with it."""
    if not path.exists():
        raise InvalidJob(field, f"{path} does not exist")
    if not path.is_file():
        raise InvalidJob(field, f"{path} is not a file")
    try:
        size = path.stat().st_size
        if size == 0:
            raise InvalidJob(field, f"{path} is empty")
        if size > max_bytes:
            raise InvalidJob(field, f"{path} is {size} bytes, over the limit of {max_bytes} (RNNQ_MAX_CORPUS_BYTES)")
        return path.read_bytes()
    except OSError as exc:
        raise InvalidJob(field, f"cannot read {path}: {exc.strerror or exc}") from None


def read_corpus(path: Path, encoding: str, max_bytes: int) -> str:
    """The corpus text, or InvalidJob naming what is wrong with the file."""
    raw = read_input(path, max_bytes)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidJob("DATA", f"{path} is not valid {encoding} ({exc.reason} at byte {exc.start}); pass --encoding") from None
    except LookupError:
        raise InvalidJob("--encoding", f"unknown encoding {encoding!r}") from None


def build_train_spec(fields: dict[str, Any]) -> TrainSpec:
    """A TrainSpec from CLI fields (data filled in after upload); SpecError names the field."""
    return TrainSpec.from_dict({"data": _PENDING_DATA, **fields})


def build_task_spec(task: str, fields: dict[str, Any], inputs: tuple[str, ...] = ("data",)) -> TrainBase:
    """The spec of a non-LM task from CLI fields; input keys are placeholders until upload."""
    return train_spec_class(task).from_dict({**{name: _PENDING_DATA for name in inputs}, **fields, "task": task})


def check_task(spec: TrainBase, paths: dict[str, Path], max_bytes: int) -> dict[str, bytes]:
    """Read and check a task's input files (named like spec.input_keys()) before any upload."""
    files = {name: read_input(path, max_bytes, "DATA" if name == "data" else f"--{name}") for name, path in paths.items()}
    checker = importlib.import_module(f"rnn_tasks.{spec.task}.spec").check_inputs  # stdlib only: no torch
    checker(spec, files)
    return files


def submit_task(store: JobStore, artifacts: ArtifactStore, app: Celery, spec: TrainBase, files: dict[str, bytes], *,
                queue: str | None = None, name: str | None = None) -> Job:
    """Upload the (checked) input files, record the training job and send it."""
    store.ping()
    with _uploading("the input files"):
        keys = {name: put_input(artifacts, data) for name, data in files.items()}
    fields = {"data": keys["data"], **{f"{k}_data": v for k, v in keys.items() if k != "data"}}
    spec = type(spec).from_dict({**spec.to_dict(), **fields})
    return _enqueue(store, app, "train", spec.to_dict(), queue, name)


def _trained(store: JobStore, source: str, flag: str = "JOB") -> Job:
    job = store.resolve(source)
    if job.kind != "train":
        raise InvalidJob(flag, f"job {job.id} is a {job.kind} job, not a training job")
    if job.state != "succeeded" or "checkpoint" not in job.artifacts:
        raise InvalidJob(flag, f"training job {job.id} is {job.state}; it needs to have succeeded")
    return job


def submit_predict(store: JobStore, artifacts: ArtifactStore, app: Celery, source: str, fields: dict[str, Any],
                   data: bytes | None, queue: str | None = None, name: str | None = None) -> Job:
    """Batch inference with a trained classify, forecast or translate model."""
    job = _trained(store, source)
    task = job.spec.get("task", "lm")
    if task == "lm":
        raise InvalidJob("JOB", f"job {job.id} is a language model: use `rnnq generate`")
    if data is None and not fields.get("texts") and task != "forecast":
        raise InvalidJob("--input", "give --input FILE or --text")
    spec = PredictSpec.from_dict({"source": job.id, **fields})
    if data is not None:
        with _uploading("--input"):
            spec = replace(spec, input=put_input(artifacts, data))
    return _enqueue(store, app, "predict", spec.to_dict(), queue, name)


def submit_eval(store: JobStore, artifacts: ArtifactStore, app: Celery, source: str, files: dict[str, bytes],
                fields: dict[str, Any], queue: str | None = None, name: str | None = None) -> Job:
    """Evaluate a trained model of any task on new data (laid out like its training input)."""
    job = _trained(store, source)
    task = job.spec.get("task", "lm")
    if fields.get("beam") is not None and task != "translate":
        raise InvalidJob("--beam", f"job {job.id} trained a {task} model; only translation decodes with a beam")
    if task == "translate" and "target" not in files and not _is_tsv(files["data"]):
        raise InvalidJob("--target", "translation needs the reference translations (--target FILE) or a TSV of pairs")
    with _uploading("--data"):
        keys = {name: put_input(artifacts, data) for name, data in files.items()}
    spec = EvalSpec.from_dict({"source": job.id, "data": keys["data"], "target": keys.get("target"), **fields})
    return _enqueue(store, app, "eval", spec.to_dict(), queue, name)


def _is_tsv(data: bytes) -> bool:
    head = data[:4096]
    return not head.startswith(b"\x1f\x8b") and b"\t" in head


def check_train(corpus: Path, spec: TrainSpec, encoding: str = "utf-8", max_bytes: int = DEFAULT_MAX_CORPUS_BYTES,
                worker_memory: int = DEFAULT_WORKER_MEMORY_BYTES) -> str:
    """The corpus text, after checking a worker can hold it and it can train `spec`; InvalidJob otherwise."""
    text = read_corpus(corpus, encoding, max_bytes)
    need = corpus_memory(text)
    if need > worker_memory:
        raise InvalidJob(
            "DATA",
            f"{corpus} is {_size(corpus.stat().st_size)}; preparing it takes a worker about {_size(need)}, over the "
            f"worker memory of {_size(worker_memory)} (RNNQ_WORKER_MEMORY_BYTES)",
        )
    try:
        windows.check(str(corpus), text, spec)
    except SpecError as exc:
        raise InvalidJob(exc.field, exc.message) from None
    return text


def corpus_memory(text: str) -> int:
    """Peak bytes a worker needs to prepare `text` for training (see CORPUS_MEMORY_PER_CHAR):
    the str itself at its real width, plus the rest of the preparation per character."""
    return sys.getsizeof(text) + int((CORPUS_MEMORY_PER_CHAR - 1) * len(text))


def _size(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def submit_train(store: JobStore, artifacts: ArtifactStore, app: Celery, text: str, spec: TrainSpec, *,
                 queue: str | None = None, name: str | None = None) -> Job:
    """Upload the (checked) corpus, record the job and send it to its queue."""
    store.ping()
    with _uploading("the corpus"):
        spec = replace(spec, data=put_corpus(artifacts, text))
    return _enqueue(store, app, "train", spec.to_dict(), queue, name)


def submit_generate(store: JobStore, app: Celery, source: str, fields: dict[str, Any], queue: str | None = None,
                    name: str | None = None) -> Job:
    """Sample from a finished training job, given by id or name."""
    job = _trained(store, source, "JOB_OR_NAME")
    if job.spec.get("task", "lm") != "lm":
        raise InvalidJob("JOB_OR_NAME", f"job {job.id} trained a {job.spec['task']} model: use `rnnq predict`")
    spec = GenerateSpec.from_dict({"source": job.id, **fields})
    if job.vocab is not None:
        vocab = set(job.vocab)
        for i, prompt in enumerate(spec.prompts):
            unknown = "".join(dict.fromkeys(c for c in prompt if c not in vocab))
            if unknown:
                raise InvalidJob(f"--prompt #{i + 1}", f"characters the model never saw in training: {unknown!r}")
    return _enqueue(store, app, "generate", spec.to_dict(), queue, name)


@contextmanager
def _uploading(what: str) -> Iterator[None]:
    """An OSError while storing input data (disk full, read-only or missing artifact root)
    becomes one line for the user; nothing has reached Redis yet."""
    try:
        yield
    except OSError as exc:
        raise UploadFailed(f"could not store {what} in the artifact store: {exc}") from None


def _enqueue(store: JobStore, app: Celery, kind: str, spec: dict[str, Any], queue: str | None, name: str | None) -> Job:
    task = f"rnnq.{kind}"
    queue = queue or TASK_QUEUES[task]
    job = store.create(kind, spec, queue, name=name)
    try:
        dispatch.send_job(job.id, kind, queue, app)
    except Exception as exc:
        store.fail_unsent(job.id, f"could not enqueue: {exc}")
        raise
    return job


__all__ = ["SpecError", "build_task_spec", "build_train_spec", "check_task", "check_train", "corpus_memory", "read_corpus",
           "read_input", "submit_eval", "submit_generate", "submit_predict", "submit_task", "submit_train"]
