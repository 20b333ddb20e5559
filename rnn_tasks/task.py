"""What every job kind implements, and the lookup from a task's name to its module.

A task is a package `rnn_tasks/<name>/` with

    spec.py   its TrainSpec subclass and check_inputs(spec, files): the submit-time
              check of the input files, stdlib only (the CLI runs it without torch);
              optionally check_eval_inputs(files), for an eval job's files,
              check_request(fields, model, find) -> fields, for a predict or eval
              request's options (find resolves another job they name: TrainedModel),
              and check_inference_input(raw, model, purpose, options), which reads
              predict's input or eval's data ("predict" | "eval") as task.py will,
              with what the training result recorded (its columns, its characters)
    task.py   the entry points below, which the worker calls by the task's name

rnn_tasks.spec.TASKS maps each name to its spec class; `lookup(name)` returns the
task module. The worker has no per-task branches: what differs lives here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, cast

from rnn_tasks.loop import Callbacks
from rnn_tasks.spec import TASKS, GenerateSpec, SpecError, TrainSpec

__all__ = ["Generator", "Task", "lookup"]

Figures = dict[str, Any]  # JSON-able results


class Task(Protocol):
    """A task module (rnn_tasks.<name>.task). Which request fields predict and evaluate take
    as options is its spec class's (TrainSpec.PREDICT_OPTIONS, EVAL_OPTIONS): the worker passes
    those that are set and nothing else."""

    def train(self, spec: TrainSpec, files: dict[str, bytes], callbacks: Callbacks | None,
              checkpoint_dir: Path | None, resume: Path | None, /) -> Figures:
        """Train on the named input files; checkpoints into checkpoint_dir (loop.BEST, loop.LAST)."""
        ...

    def predict(self, checkpoint: Path, inputs: bytes, options: dict[str, Any], device: str, /) -> Figures:
        """Apply the checkpoint's model to new inputs."""
        ...

    def evaluate(self, checkpoint: Path, files: dict[str, bytes], device: str,
                 options: Mapping[str, Any] | None = None, /) -> Figures:
        """Held-out figures of the checkpoint's model on files laid out like the training input."""
        ...


class Generator(Task, Protocol):
    """A task whose models also generate (the language model)."""

    def generate(self, checkpoint: Path, spec: GenerateSpec, should_stop: Callable[[], bool], /) -> Figures:
        ...


def lookup(task: str) -> Task:
    """The module of a task (imported now: this loads torch and the task's libraries)."""
    if task not in TASKS:
        raise SpecError("task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    return cast(Task, importlib.import_module(f"rnn_tasks.{task}.task"))


def generator(task: str) -> Generator:
    """The task's module if its models generate text; SpecError naming the source otherwise."""
    module = lookup(task)
    if not callable(getattr(module, "generate", None)):
        raise SpecError("source", f"a {task} model does not generate text")
    return cast(Generator, module)


def options(request: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The request's fields among `names` that are set (not None)."""
    return {name: request[name] for name in names if request.get(name) is not None}
