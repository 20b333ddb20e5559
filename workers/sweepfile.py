"""Sweep files: what `rnnq sweep FILE` reads, checked before anything is queued.

A sweep file is YAML (or JSON, which is YAML) with these keys; only `base` and `space`
are required:

    name: tiny-lstm          # the sweep's name (--name wins; default: the file's stem + 4 hex digits)
    base:                    # a training job: `task` (default lm) and any spec field;
      data: corpus.txt       #   inputs (data, target_data) are paths, relative to this file
      arch: lstm
    space:                   # spec field -> what to search
      lr: {low: 1.0e-4, high: 3.0e-2, log: true}   # a float range (log scale)
      hidden: {low: 32, high: 256, step: 32}       # an int range (both bounds are ints)
      arch: [lstm, gru]                            # a list: one of these values
    objective: val_loss      # a figure the task reports at evaluation
    direction: minimize      # default: minimize for losses and errors, maximize for scores
    trials: 16               # how many trials the sweep asks for
    budget: {max_steps: 600} # each trial's stop conditions: max_steps, epochs, time_budget
    sampler: tpe             # grid | random | tpe, or {name: tpe, seed: 1}
    pruner: asha             # none | asha | hyperband, or {name: asha, min_resource: 100, reduction_factor: 3}
    parallel: 2              # trials queued or running at once (--parallel wins)
    queue: train             # the queue the trials go to

Every error is a SweepError naming the line and the key (`line 7: space.lr: ...`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnn_tasks.spec import TASKS, SpecError, TrainSpec, train_spec_class
from workers.errors import InvalidJob

# What each task reports at every evaluation (rnn_tasks' Problem.evaluate / the LM's
# validation pass), and which way is better. A sweep's objective must be one of these.
FIGURES: dict[str, tuple[str, ...]] = {
    "lm": ("val_loss",),
    "classify": ("val_loss", "accuracy", "macro_f1"),
    "forecast": ("val_loss", "mae", "rmse"),
    "translate": ("val_loss", "bleu", "chrf"),
}
MAXIMIZE = ("accuracy", "macro_f1", "bleu", "chrf")
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "asha", "hyperband")
PRUNER_OPTIONS = {"none": (), "asha": ("min_resource", "reduction_factor"),
                  "hyperband": ("min_resource", "max_resource", "reduction_factor")}
BUDGET_FIELDS = ("max_steps", "epochs", "time_budget")
INPUT_FIELDS = {"data": "data", "target_data": "target"}  # base field -> input name (spec.input_keys())
KEYS = ("name", "base", "space", "objective", "direction", "trials", "budget", "sampler", "pruner", "parallel", "queue")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_TRIALS = 10_000


class SweepError(InvalidJob):
    """A sweep file is invalid; the message names the line and the key."""


@dataclass(frozen=True)
class Param:
    """One dimension of the search space: choices, or an int/float range."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    is_int: bool = False

    def extremes(self) -> list[Any]:
        """The values whose validity stands for the whole dimension's."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler; None for a continuous range."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int:
            step = int(self.step or 1)
            return list(range(int(self.low or 0), int(self.high or 0) + 1, step))
        return None

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {k: v for k, v in (("low", self.low), ("high", self.high), ("step", self.step), ("log", self.log),
                                  ("int", self.is_int)) if v is not None}


@dataclass(frozen=True)
class Sweep:
    """A parsed, checked sweep file. `base` holds spec fields with inputs as paths."""

    base: dict[str, Any]
    space: tuple[Param, ...]
    task: str = "lm"
    name: str | None = None
    objective: str = "val_loss"
    direction: str = "minimize"
    trials: int = 16
    budget: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    seed: int | None = None
    pruner: str = "none"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    parallel: int = 2
    queue: str | None = None

    def inputs(self) -> dict[str, Path]:
        """Input files by input name (data, target)."""
        return {INPUT_FIELDS[k]: Path(v) for k, v in self.base.items() if k in INPUT_FIELDS}

    def spec_fields(self) -> dict[str, Any]:
        """Base spec fields, budget applied, inputs left out."""
        return {**{k: v for k, v in self.base.items() if k not in INPUT_FIELDS}, **self.budget}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["space"] = {p.name: p.to_dict() for p in self.space}
        out["base"] = {k: str(v) if isinstance(v, Path) else v for k, v in self.base.items()}
        return out


class _Lines:
    """Line numbers of the keys of a YAML mapping, by dotted path ('space.lr')."""

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        try:
            node = yaml.compose(text)
        except yaml.YAMLError:
            return
        self._walk(node, "")

    def _walk(self, node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = f"{prefix}{key.value}"
                self.lines[path] = key.start_mark.line + 1
                self._walk(value, path + ".")

    def error(self, path: str, message: str) -> SweepError:
        parts = path.split(".")
        while parts and ".".join(parts) not in self.lines:
            parts.pop()
        line = self.lines.get(".".join(parts))
        return SweepError("SWEEP_FILE", f"{f'line {line}: ' if line else ''}{path}: {message}")


def load(path: Path) -> Sweep:
    """Read and check a sweep file; SweepError (an InvalidJob) names the line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError("SWEEP_FILE", f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(text, path.parent)


def parse(text: str, root: Path = Path(".")) -> Sweep:
    lines = _Lines(text)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SweepError("SWEEP_FILE", f"{where}not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise SweepError("SWEEP_FILE", "expected a mapping with at least `base` and `space`")
    for key in doc:
        if key not in KEYS:
            raise lines.error(str(key), f"unknown key (expected one of {', '.join(KEYS)})")
    for key in ("base", "space"):
        if key not in doc:
            raise SweepError("SWEEP_FILE", f"{key}: required key is missing")
    base = _base(doc["base"], root, lines)
    task = base.pop("task", "lm")
    space = _space(doc["space"], lines)
    objective, direction = _objective(doc, task, lines)
    sampler, seed = _sampler(doc.get("sampler", "tpe"), lines)
    pruner, options = _pruner(doc.get("pruner", "none"), lines)
    budget = _budget(doc.get("budget", {}), lines)
    trials = _int(doc.get("trials", 16), "trials", 1, MAX_TRIALS, lines)
    if sampler == "grid":
        trials = min(trials, _grid_size(space, lines))
    sweep = Sweep(base=base, space=space, task=task, name=_name(doc.get("name"), lines), objective=objective,
                  direction=direction, trials=trials, budget=budget, sampler=sampler, seed=seed, pruner=pruner,
                  pruner_options=options, parallel=_int(doc.get("parallel", 2), "parallel", 1, 1000, lines),
                  queue=_queue(doc.get("queue"), lines))
    check_space(sweep, lines)
    return sweep


def _base(value: Any, root: Path, lines: _Lines) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise lines.error("base", "expected a mapping of spec fields")
    base = {str(k).replace("-", "_"): v for k, v in value.items()}
    task = base.get("task", "lm")
    if task not in TASKS:
        raise lines.error("base.task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    if "data" not in base:
        raise lines.error("base", "data: the input file is missing")
    for name in INPUT_FIELDS:
        if name in base:
            if not isinstance(base[name], str):
                raise lines.error(f"base.{name}", "expected a file path")
            base[name] = root / base[name]
    return base


def _param(name: str, value: Any, lines: _Lines) -> Param:
    where = f"space.{name}"
    if isinstance(value, list):
        if not value:
            raise lines.error(where, "empty list of choices")
        if any(v is not None and not isinstance(v, (bool, int, float, str)) for v in value):
            raise lines.error(where, "choices must be numbers, strings, booleans or null")
        return Param(name, choices=tuple(value))
    if not isinstance(value, dict):
        raise lines.error(where, "expected a list of choices or {low, high[, step][, log]}")
    if "choices" in value:
        _known(value, ("choices",), where, lines)
        return _param(name, value["choices"], lines)
    _known(value, ("low", "high", "step", "log", "type"), where, lines)
    if "low" not in value or "high" not in value:
        raise lines.error(where, "a range needs both low and high")
    low, high, step, log = value["low"], value["high"], value.get("step"), value.get("log", False)
    for key, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise lines.error(f"{where}.{key}", f"expected a number, got {v!r}")
    kind = value.get("type", "int" if all(isinstance(v, int) for v in (low, high, step) if v is not None) else "float")
    if kind not in ("int", "float"):
        raise lines.error(f"{where}.type", f"must be int or float, got {kind!r}")
    if not isinstance(log, bool):
        raise lines.error(f"{where}.log", f"expected true or false, got {log!r}")
    if low > high:
        raise lines.error(where, f"empty range: low {low} is above high {high}")
    if log and low <= 0:
        raise lines.error(f"{where}.low", f"a log range needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise lines.error(f"{where}.step", "must be > 0, and not combined with log")
    return Param(name, low=low, high=high, step=step, log=log, is_int=kind == "int")


def _known(value: dict[str, Any], known: tuple[str, ...], where: str, lines: _Lines) -> None:
    for key in value:
        if key not in known:
            raise lines.error(f"{where}.{key}", f"unknown key (expected {', '.join(known)})")


def _space(value: Any, lines: _Lines) -> tuple[Param, ...]:
    if not isinstance(value, dict) or not value:
        raise lines.error("space", "expected a mapping of spec fields to choices or ranges")
    return tuple(_param(str(name).replace("-", "_"), v, lines) for name, v in value.items())


def _objective(doc: dict[str, Any], task: str, lines: _Lines) -> tuple[str, str]:
    objective = doc.get("objective", "val_loss")
    if objective not in FIGURES[task]:
        raise lines.error("objective", f"the {task} task does not report {objective!r} at evaluation "
                                       f"(it reports {', '.join(FIGURES[task])})")
    direction = doc.get("direction", "maximize" if objective in MAXIMIZE else "minimize")
    if direction not in ("minimize", "maximize"):
        raise lines.error("direction", f"must be minimize or maximize, got {direction!r}")
    return objective, direction


def _named(value: Any, key: str, names: tuple[str, ...], lines: _Lines) -> tuple[str, dict[str, Any]]:
    options: dict[str, Any] = {}
    where = key
    if isinstance(value, dict):
        options, where = dict(value), f"{key}.name"
        value = options.pop("name", None)
    if value not in names:
        raise lines.error(where, f"must be one of {', '.join(names)}, got {value!r}")
    return str(value), options


def _sampler(value: Any, lines: _Lines) -> tuple[str, int | None]:
    name, options = _named(value, "sampler", SAMPLERS, lines)
    for key in options:
        if key != "seed":
            raise lines.error(f"sampler.{key}", "unknown option (expected seed)")
    seed = options.get("seed")
    return name, None if seed is None else _int(seed, "sampler.seed", 0, 2**32 - 1, lines)


def _pruner(value: Any, lines: _Lines) -> tuple[str, dict[str, Any]]:
    name, options = _named(value, "pruner", PRUNERS, lines)
    for key, v in options.items():
        if key not in PRUNER_OPTIONS[name]:
            known = ", ".join(PRUNER_OPTIONS[name]) or "none"
            raise lines.error(f"pruner.{key}", f"unknown option for {name} (expected {known})")
        if not (v == "auto" and key != "reduction_factor"):
            _int(v, f"pruner.{key}", 2 if key == "reduction_factor" else 1, 10**12, lines)
    return name, options


def _budget(value: Any, lines: _Lines) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise lines.error("budget", f"expected a mapping of {', '.join(BUDGET_FIELDS)}")
    for key in value:
        if key not in BUDGET_FIELDS:
            raise lines.error(f"budget.{key}", f"unknown budget (expected {', '.join(BUDGET_FIELDS)})")
    return dict(value)


def _int(value: Any, key: str, lo: int, hi: int, lines: _Lines) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise lines.error(key, f"expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def _name(value: Any, lines: _Lines) -> str | None:
    if value is not None and (not isinstance(value, str) or not NAME_RE.match(value)):
        raise lines.error("name", "letters, digits, '.', '_' and '-', at most 64 characters")
    return value


def _queue(value: Any, lines: _Lines) -> str | None:
    if value is not None and (not isinstance(value, str) or not NAME_RE.match(value)):
        raise lines.error("queue", f"not a queue name: {value!r}")
    return value


def _grid_size(space: tuple[Param, ...], lines: _Lines) -> int:
    size = 1
    for p in space:
        values = p.grid()
        if values is None:
            raise lines.error(f"space.{p.name}", "the grid sampler needs choices or an int range (or a float step)")
        size *= len(values)
    return size


def spec_class(task: str) -> type[TrainSpec]:
    return train_spec_class(task)


def check_space(sweep: Sweep, lines: _Lines | None = None) -> None:
    """The base spec, and the base with each dimension at each extreme, are valid specs."""
    lines = lines or _Lines("")
    cls = spec_class(sweep.task)
    fields = {f.name for f in dataclasses.fields(cls)}
    base = {**sweep.spec_fields(), **{k: "pending/input" for k in INPUT_FIELDS if k in sweep.base}, "task": sweep.task}
    for p in sweep.space:
        if p.name not in fields or p.name in ("task", *INPUT_FIELDS):
            raise lines.error(f"space.{p.name}", f"not a field of a {sweep.task} spec that can be searched")
    try:
        cls.from_dict(base)
    except SpecError as exc:
        key = f"budget.{exc.field}" if exc.field in sweep.budget else f"base.{exc.field}"
        raise lines.error(key, exc.message) from None
    for p in sweep.space:
        for value in p.extremes():
            try:
                cls.from_dict({**base, p.name: value})
            except SpecError as exc:
                raise lines.error(f"space.{p.name}", f"{value!r}: {exc.message}") from None
