"""Submitting jobs: validate everything first, then upload, record and enqueue.

Nothing reaches Redis or the artifact store until the spec and the input data have
passed every check, so a rejected job leaves no trace.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnn_tasks.lm.spec import unseen_chars
from rnn_tasks.spec import EvalSpec, GenerateSpec, PredictSpec, SpecError, TrainedModel, TrainSpec, train_spec_class
from workers import dispatch
from workers.artifacts import ArtifactStore, put_input
from workers.errors import InvalidJob, JobNotFound, UploadFailed
from workers.jobstore import Job, JobStore
from workers.queues import KIND_QUEUES
from workers.settings import CORPUS_MEMORY_PER_CHAR, DEFAULT_MAX_CORPUS_BYTES, DEFAULT_WORKER_MEMORY_BYTES

if TYPE_CHECKING:
    from celery import Celery

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


def read_text(path: Path, encoding: str, max_bytes: int, worker_memory: int) -> bytes:
    """A text input re-encoded as UTF-8, after checking it decodes and a worker can hold it
    while preparing it (see corpus_memory); InvalidJob otherwise."""
    raw = read_input(path, max_bytes)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidJob("DATA", f"{path} is not valid {encoding} ({exc.reason} at byte {exc.start}); pass --encoding") from None
    except LookupError:
        raise InvalidJob("--encoding", f"unknown encoding {encoding!r}") from None
    need = corpus_memory(text)
    if need > worker_memory:
        raise InvalidJob(
            "DATA",
            f"{path} is {_size(path.stat().st_size)}; preparing it takes a worker about {_size(need)}, over the "
            f"worker memory of {_size(worker_memory)} (RNNQ_WORKER_MEMORY_BYTES)",
        )
    return raw if encoding.replace("-", "").lower() == "utf8" else text.encode("utf-8")


def build_spec(task: str, fields: dict[str, Any], inputs: tuple[str, ...] = ("data",)) -> TrainSpec:
    """The training spec of any task from CLI fields; input keys are placeholders until upload.
    SpecError names the field."""
    return train_spec_class(task).from_dict({**{name: _PENDING_DATA for name in inputs}, **fields, "task": task})


def check_inputs(spec: TrainSpec, paths: dict[str, Path], max_bytes: int = DEFAULT_MAX_CORPUS_BYTES, *,
                 encoding: str = "utf-8", worker_memory: int = DEFAULT_WORKER_MEMORY_BYTES) -> dict[str, bytes]:
    """Read a training job's input files (named like spec.input_keys()) and run its task's
    submit-time check (rnn_tasks.<task>.spec.check_inputs, stdlib only) before any upload.

    How a file is read depends on what it holds, not on the task's name: a text corpus
    (TEXT_INPUT) is decoded with `encoding` and sized against the worker's memory; a
    speech corpus (AUDIO_INPUT: a manifest or folder) becomes one bundle of checked recordings."""
    if spec.AUDIO_INPUT:
        files = {"data": _speech_corpus(spec, paths["data"], max_bytes)}
    elif spec.TEXT_INPUT:
        files = {"data": read_text(paths["data"], encoding, max_bytes, worker_memory)}
    else:
        files = {name: read_input(path, max_bytes, "DATA" if name == "data" else f"--{name}")
                 for name, path in paths.items()}
    check_files(spec, files)
    return files


def check_files(spec: TrainSpec, files: dict[str, bytes]) -> None:
    """The task's own submit-time check of input files already read (SpecError naming the field)."""
    importlib.import_module(type(spec).__module__).check_inputs(spec, files)


def submit_train(store: JobStore, artifacts: ArtifactStore, app: Celery, spec: TrainSpec, files: dict[str, bytes], *,
                 queue: str | None = None, name: str | None = None) -> Job:
    """Upload the (checked) input files, record the training job and send it."""
    store.ping()
    with _uploading("the input files"):
        keys = {name: put_input(artifacts, data) for name, data in files.items()}
    fields = {"data": keys["data"], **{f"{k}_data": v for k, v in keys.items() if k != "data"}}
    spec = type(spec).from_dict({**spec.to_dict(), **fields})
    return _enqueue(store, app, "train", spec.to_dict(), queue, name)


def audio_bundle(paths: list[Path], field: str, *, transcripts: bool, max_seconds: float, max_bytes: int,
                 lowercase: bool = True, punctuation: bool = False) -> bytes:
    """Check every recording a speech corpus or a predict input lists, and pack them into one
    content-addressed bundle (rnn_tasks.transcribe.spec). Refusals name the file: missing,
    unreadable, longer than max_seconds, or (with transcripts) an empty transcript."""
    from rnn_tasks.transcribe import manifest  # stdlib
    from rnn_tasks.transcribe.spec import write_bundle

    utterances, total = [], 0
    for path in paths:
        try:
            entries = manifest.collect(path, field, transcripts)
        except SpecError as exc:
            raise InvalidJob(field, exc.message) from None
        for entry in entries:
            where = f"{entry.name} ({entry.where})" if entry.where != entry.name else entry.name
            if not entry.path.is_file():
                raise InvalidJob(field, f"{where}: audio file {entry.path} does not exist")
            data = entry.path.read_bytes()
            total += len(data)
            if total > max_bytes:
                raise InvalidJob(field, f"the audio passes {max_bytes} bytes at {where} (RNNQ_MAX_CORPUS_BYTES)")
            _check_recording(field, where, data, entry.transcript if transcripts else None, max_seconds,
                             lowercase, punctuation)
            utterances.append((entry.name, data, entry.transcript or ""))
    try:
        return write_bundle(utterances)
    except SpecError as exc:
        raise InvalidJob(field, exc.message) from None


def _check_recording(field: str, where: str, data: bytes, transcript: str | None, max_seconds: float,
                     lowercase: bool, punctuation: bool) -> None:
    """One recording is readable audio within max_seconds, and its transcript (None: not
    checked, as for predict) is not empty once normalised."""
    from rnn_tasks.transcribe import audio  # soundfile and numpy, no torch
    from rnn_tasks.transcribe.spec import normalize

    if transcript is not None and not normalize(transcript, lowercase, punctuation):
        raise InvalidJob(field, f"{where}: empty transcript")
    try:
        seconds = audio.seconds(data)
    except audio.AudioError as exc:
        raise InvalidJob(field, f"{where}: {exc}") from None
    if seconds > max_seconds:
        raise InvalidJob(field, f"{where}: {seconds:.1f} s long, over the bound of {max_seconds:g} s "
                                "(--set max_seconds=...)")


def _speech_corpus(spec: TrainSpec, path: Path, max_bytes: int) -> bytes:
    """The bundle of a speech corpus (a manifest or a folder), every recording checked.

    A job file from `rnnq status --spec` names the stored bundle itself: its recordings are
    checked again (the re-run may bound them tighter) and it is sent as it is."""
    from rnn_tasks.transcribe.spec import is_bundle, read_bundle

    lowercase, punctuation = spec.lowercase, spec.punctuation  # type: ignore[attr-defined]
    max_seconds = spec.max_seconds  # type: ignore[attr-defined]
    if not is_bundle(path):
        return audio_bundle([path], "DATA", transcripts=True, max_seconds=max_seconds, max_bytes=max_bytes,
                            lowercase=lowercase, punctuation=punctuation)
    raw = read_input(path, max_bytes)
    try:
        utterances, recordings = read_bundle(raw)
    except SpecError as exc:
        raise InvalidJob("DATA", f"{path}: {exc.message}") from None
    for utt in utterances:
        _check_recording("DATA", utt.name, recordings[utt.member], utt.transcript, max_seconds, lowercase,
                         punctuation)
    return raw


def trained_task(store: JobStore, source: str) -> str:
    """The task of a finished training job ("lm", "classify", ...), given by id or name."""
    return str(_trained(store, source).spec.get("task", "lm"))


def inference_input(store: JobStore, source: str, paths: list[Path], field: str, max_bytes: int, *,
                    transcripts: bool) -> bytes:
    """predict's --input or eval's --data for the model trained by `source`: recordings
    bundled and checked where the model hears audio (its spec's AUDIO_INPUT; transcripts
    for eval), else the one file as it is."""
    if train_spec_class(trained_task(store, source)).AUDIO_INPUT:
        return speech_inputs(store, source, paths, field, max_bytes, transcripts=transcripts)
    if len(paths) > 1:
        raise InvalidJob(field, "give one file (several only for speech recognition)")
    return read_input(paths[0], max_bytes, field)


def speech_inputs(store: JobStore, source: str, paths: list[Path], field: str, max_bytes: int,
                  transcripts: bool) -> bytes:
    """Recordings for a speech recogniser's predict (transcripts=False) or eval job, checked
    against its training spec (length bound) and, for eval, its alphabet."""
    from rnn_tasks.transcribe.manifest import collect
    from rnn_tasks.transcribe.spec import TranscribeSpec, normalize

    job = _trained(store, source)
    spec = TranscribeSpec.from_dict(job.spec)
    bundle = audio_bundle(paths, field, transcripts=transcripts, max_seconds=spec.max_seconds, max_bytes=max_bytes,
                          lowercase=spec.lowercase, punctuation=spec.punctuation)
    alphabet = set((job.result or {}).get("alphabet", ""))
    if transcripts and alphabet:
        for path in paths:
            for entry in collect(path, field, True):
                unseen = "".join(dict.fromkeys(c for c in normalize(entry.transcript or "", spec.lowercase,
                                                                    spec.punctuation) if c not in alphabet))
                if unseen:
                    raise InvalidJob(field, f"{entry.name} ({entry.where}): characters the model never saw in "
                                            f"training: {unseen!r}")
    return bundle


def _check_options(job: Job, fields: dict[str, Any], taken: tuple[str, ...], what: str) -> None:
    """Refuse request options the trained model's task does not take (its spec class says which)."""
    task = job.spec.get("task", "lm")
    for name in ("beam", "max_len", "lm", "lm_weight", "lm_bonus"):
        if fields.get(name) is not None and name not in taken:
            uses = "" if not taken else f"; it takes {', '.join('--' + t.replace('_', '-') for t in taken)}"
            raise InvalidJob("--" + name.replace("_", "-"), f"job {job.id} trained a {task} model, whose {what} does "
                                                           f"not take it{uses}")


def _task_check(cls: type[TrainSpec], name: str) -> Callable[..., Any] | None:
    """A submit-time check the task's spec module defines (stdlib only), or None: what
    differs between kinds lives there, so the submit functions have no per-kind branches."""
    return getattr(importlib.import_module(cls.__module__), name, None)


def _check_request(store: JobStore, job: Job, cls: type[TrainSpec], fields: dict[str, Any]) -> dict[str, Any]:
    """The predict or eval request's fields as the task's check_request returns them (it
    may resolve other jobs they name, such as a speech recogniser's --lm); unchanged when
    the task has none."""
    check = _task_check(cls, "check_request")
    if check is None:
        return fields

    def find(source: str, field: str) -> TrainedModel:
        return _model(_trained(store, source, field))

    try:
        return dict(check(fields, _model(job), find))
    except SpecError as exc:
        raise InvalidJob(exc.field, exc.message) from None


def _check_input(job: Job, cls: type[TrainSpec], raw: bytes, purpose: str, flag: str, options: dict[str, Any]) -> None:
    """predict's input or eval's data read at submit as the worker will read it, by the
    task's check_inference_input (its columns, its rows, its characters), so that a file
    the model cannot read is one line now rather than a failed job later."""
    check = _task_check(cls, "check_inference_input")
    if check is None:
        return
    try:
        check(raw, _model(job), purpose, options)
    except SpecError as exc:
        about_the_file = exc.field in ("DATA", "data", "inputs")
        raise InvalidJob(flag, exc.message if about_the_file else f"{exc.field}: {exc.message}") from None


def resolve_sources(store: JobStore, task: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A training job's fields with the jobs they name (TrainSpec.SOURCE_FIELDS, such as a
    classifier's init_from) checked and given by id, as the task's check_sources returns
    them (it may adopt the named model's shape); unchanged when they name none."""
    cls = train_spec_class(task)
    check = _task_check(cls, "check_sources")
    if check is None or all(fields.get(name) is None for name in cls.SOURCE_FIELDS):
        return fields

    def find(source: str, field: str) -> TrainedModel:
        try:
            return _model(_trained(store, source, field))
        except JobNotFound as exc:
            raise InvalidJob(field, str(exc)) from None

    try:
        return dict(check(fields, find))
    except SpecError as exc:
        raise InvalidJob(exc.field, exc.message) from None


def _model(job: Job) -> TrainedModel:
    return TrainedModel(id=job.id, spec=dict(job.spec), result=dict(job.result or {}))


def _trained(store: JobStore, source: str, flag: str = "JOB") -> Job:
    job = store.resolve(source)
    if job.kind != "train":
        raise InvalidJob(flag, f"job {job.id} is a {job.kind} job, not a training job")
    if job.state != "succeeded" or "checkpoint" not in job.artifacts:
        raise InvalidJob(flag, f"training job {job.id} is {job.state}; it needs to have succeeded")
    return job


def submit_predict(store: JobStore, artifacts: ArtifactStore, app: Celery, source: str, fields: dict[str, Any],
                   data: bytes | None, queue: str | None = None, name: str | None = None) -> Job:
    """Batch inference with a trained model of any task but the language model (which generates)."""
    job = _trained(store, source)
    cls = train_spec_class(job.spec.get("task", "lm"))
    if cls.GENERATES:
        raise InvalidJob("JOB", f"job {job.id} is a language model: use `rnnq generate`")
    if data is None and not fields.get("texts") and not cls.PREDICT_FROM_TRAINING_DATA:
        raise InvalidJob("--input", "give --input FILE or --text")
    if cls.AUDIO_INPUT and fields.get("texts"):
        raise InvalidJob("--text", f"job {job.id} recognises speech: give recordings with --input")
    _check_options(job, fields, cls.PREDICT_OPTIONS, "predict")
    fields = _check_request(store, job, cls, fields)
    if data is not None:
        _check_input(job, cls, data, "predict", "--input", {"format": fields.get("format", "lines")})
    elif fields.get("texts"):  # the worker reads them as lines
        _check_input(job, cls, "\n".join(fields["texts"]).encode("utf-8"), "predict", "--text", {"format": "lines"})
    spec = PredictSpec.from_dict({"source": job.id, **fields})
    if data is not None:
        with _uploading("--input"):
            spec = replace(spec, input=put_input(artifacts, data))
    return _enqueue(store, app, "predict", spec.to_dict(), queue, name)


def submit_eval(store: JobStore, artifacts: ArtifactStore, app: Celery, source: str, files: dict[str, bytes],
                fields: dict[str, Any], queue: str | None = None, name: str | None = None) -> Job:
    """Evaluate a trained model of any task on new data (laid out like its training input)."""
    job = _trained(store, source)
    cls = train_spec_class(job.spec.get("task", "lm"))
    _check_options(job, fields, cls.EVAL_OPTIONS, "evaluation")
    if "target" in files and "target_data" not in {f.name for f in dataclasses.fields(cls)}:
        raise InvalidJob("--target-file", f"job {job.id} trained a {job.spec.get('task', 'lm')} model, which reads "
                                          "no target file (it is for translation)")
    fields = _check_request(store, job, cls, fields)
    check_eval = _task_check(cls, "check_eval_inputs")
    if check_eval is not None:
        try:
            check_eval(files)
        except SpecError as exc:
            raise InvalidJob(exc.field, exc.message) from None
    _check_input(job, cls, files["data"], "eval", "--data", {})
    with _uploading("--data"):
        keys = {name: put_input(artifacts, data) for name, data in files.items()}
    spec = EvalSpec.from_dict({"source": job.id, "data": keys["data"], "target": keys.get("target"), **fields})
    return _enqueue(store, app, "eval", spec.to_dict(), queue, name)


def corpus_memory(text: str) -> int:
    """Peak bytes a worker needs to prepare `text` for training (see CORPUS_MEMORY_PER_CHAR):
    the str itself at its real width, plus the rest of the preparation per character."""
    return sys.getsizeof(text) + int((CORPUS_MEMORY_PER_CHAR - 1) * len(text))


def _size(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def submit_generate(store: JobStore, app: Celery, source: str, fields: dict[str, Any], queue: str | None = None,
                    name: str | None = None) -> Job:
    """Sample from a finished training job, given by id or name."""
    job = _trained(store, source, "JOB_OR_NAME")
    if not train_spec_class(job.spec.get("task", "lm")).GENERATES:
        raise InvalidJob("JOB_OR_NAME", f"job {job.id} trained a {job.spec['task']} model: use `rnnq predict`")
    spec = GenerateSpec.from_dict({"source": job.id, **fields})
    for i, prompt in enumerate(spec.prompts):
        unknown = unseen_chars(prompt, _model(job))  # a char model's (rnn_tasks.lm.task.train records them)
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
    queue = queue or KIND_QUEUES[kind]
    job = store.create(kind, spec, queue, name=name)
    try:
        dispatch.send_job(store, job.id, kind, queue, app)
    except Exception as exc:
        store.fail_unsent(job.id, f"could not enqueue: {exc}")
        raise
    return job


__all__ = ["audio_bundle", "build_spec", "check_files", "check_inputs", "corpus_memory", "inference_input", "read_input",
           "read_text", "resolve_sources", "speech_inputs", "submit_eval", "submit_generate", "submit_predict",
           "submit_train", "trained_task"]
