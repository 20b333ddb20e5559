"""Sweep files: what `rnnq sweep FILE` reads, checked before anything is queued.

A sweep file is YAML (or JSON) with these keys; only `base` and `space` are required:

    name: tiny-lstm          # the sweep's name (--name wins; default: the file's stem + 4 hex digits)
    base:                    # a training job, as in a job file (`rnnq train -f`): `task` (default
      data: corpus.txt       #   lm), any spec field and `encoding`; inputs (data, target_data) are
                             #   paths relative to this file, or `artifact:KEY`
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
    pruner: asha             # none | asha | hyperband, or {name: asha, min_resource: 100, reduction_factor: 3,
                             #   resource: steps | seconds}: what the rungs count; seconds (of training)
                             #   by default when the budget is a time_budget alone
    parallel: 2              # trials queued or running at once (--parallel wins)
    enqueue: [base, {lr: 0.01}]  # points the sweep tries first, in order (Optuna's enqueue_trial):
                             #   `base` is the base job as it stands (its values, or the spec's
                             #   defaults, for every searched field); a mapping fixes some searched
                             #   fields and the sampler draws the rest. Each counts as a trial.
    queue: train             # the queue the trials go to

Every error is a SweepError naming the line and the key (`line 7: space.lr: ...`): the
file is composed into YAML nodes once (yaml.safe_load's loader, so no tags beyond YAML's
own), their marks give each key's line, and the same nodes are then constructed into
the document. Two differences from yaml.safe_load, both refusals or JSON's reading:
a key given twice is refused (safe_load keeps the last silently), and `1e-4` is a float
(YAML 1.2 and JSON; PyYAML's YAML 1.1 reads it as a string).
"""

from __future__ import annotations

import codecs
import dataclasses
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable
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
    "transcribe": ("val_loss", "cer", "wer"),
}
MAXIMIZE = ("accuracy", "macro_f1", "bleu", "chrf")
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "asha", "hyperband")
PRUNER_OPTIONS = {"none": (), "asha": ("min_resource", "reduction_factor", "resource"),
                  "hyperband": ("min_resource", "max_resource", "reduction_factor", "resource")}
RESOURCES = ("steps", "seconds")  # what a pruner's rungs count: optimizer steps, or training seconds
BUDGET_FIELDS = ("max_steps", "epochs", "time_budget")
INPUT_FIELDS = {"data": "data", "target_data": "target"}  # base field -> input name (spec.input_keys())
ARTIFACT = "artifact:"  # an input already in the artifact store, as `rnnq status JOB --spec` writes it
KEYS = ("name", "base", "space", "objective", "direction", "trials", "budget", "sampler", "pruner", "parallel", "queue",
        "enqueue")
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

    def extremes(self) -> list[tuple[str, Any]]:
        """The values whose validity stands for the whole dimension's, each with where it
        is written under the dimension's key: every choice ('[2]'), or a range's ends ('.low')."""
        if self.choices is not None:
            return [(f"[{i}]", v) for i, v in enumerate(self.choices)]
        return [(".low", self.low), (".high", self.high)]

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler; None for a continuous range."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int:
            step = int(self.step or 1)
            return list(range(int(self.low or 0), int(self.high or 0) + 1, step))
        return None

    def contains(self, value: Any) -> bool:
        """Whether the sampler could draw `value` (what Optuna takes as an enqueued point)."""
        if self.choices is not None:
            return any(type(value) is type(c) and value == c for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.is_int and not isinstance(value, int):
            return False
        low, high = float(self.low or 0), float(self.high or 0)
        if not low <= value <= high:
            return False
        if self.step is None:
            return True
        steps = (value - low) / self.step
        return abs(steps - round(steps)) < 1e-9

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        return f"{self.low} to {self.high}" + (f" in steps of {self.step}" if self.step is not None else "")

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {k: v for k, v in (("low", self.low), ("high", self.high), ("step", self.step), ("log", self.log),
                                  ("int", self.is_int)) if v is not None}


class Lines:
    """Where each key of a sweep file is: its line (1-based) by dotted path ('space.lr',
    'space.lr.low', a list's items as 'space.arch[1]'), as written and with '-' as '_'.
    A path not found falls back to its parent's line, and at last to the document's."""

    def __init__(self, root: int = 1) -> None:
        self.root = root
        self.lines: dict[str, int] = {}

    @classmethod
    def of(cls, node: yaml.Node | None) -> Lines:
        """The lines of a composed document; SweepError for a key given twice."""
        lines = cls(node.start_mark.line + 1 if node is not None else 1)
        if node is not None:
            lines._walk(node, "", set())
        return lines

    def _walk(self, node: yaml.Node, path: str, seen: set[int]) -> None:
        if id(node) in seen:  # an alias of a node already walked (maybe of itself)
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name = f"{path}.{key.value}" if path else str(key.value)
                line = key.start_mark.line + 1
                spelled = name.replace("-", "_")  # `seq-len` and `seq_len` are one field
                if spelled in first:
                    raise SweepError("SWEEP_FILE", f"line {line}: {name}: given twice (first on line {first[spelled]})")
                first[spelled] = line
                self.lines.setdefault(name, line)
                self.lines.setdefault(spelled, line)
                self._walk(value, name, seen)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines.setdefault(f"{path}[{i}]", item.start_mark.line + 1)
                self._walk(item, f"{path}[{i}]", seen)

    def line(self, path: str) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            parent = _PARENT.sub("", path, count=1)
            path = "" if parent == path else parent
        return self.root

    def error(self, path: str, message: str, at: str | None = None) -> SweepError:
        """`line N: path: message`, N the line of `at` (a more precise place) or of `path`."""
        prefix = f"{path}: " if path else ""
        return SweepError("SWEEP_FILE", f"line {self.line(at or path)}: {prefix}{message}")


_PARENT = re.compile(r"(?:\.[^.\[]*|\[\d+\])$")  # the last step of a path: '.low' or '[1]'


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader with YAML 1.2's (and JSON's) floats: `1e-4`, `2E5`."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


@dataclass(frozen=True)
class Sweep:
    """A parsed, checked sweep file. `base` holds spec fields with inputs as paths (or
    `artifact:KEY`); `lines` says where each key was, for the errors found later."""

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
    encoding: str = "utf-8"  # of text inputs, as `rnnq train --encoding`
    enqueue: tuple[dict[str, Any], ...] = ()  # points tried first: searched field -> value
    lines: Lines = field(default_factory=Lines, compare=False, repr=False)

    def inputs(self) -> dict[str, Path | str]:
        """Input files by input name (data, target): paths, or `artifact:KEY`."""
        return {INPUT_FIELDS[k]: v for k, v in self.base.items() if k in INPUT_FIELDS}

    def spec_fields(self) -> dict[str, Any]:
        """Base spec fields, budget applied, inputs left out."""
        return {**{k: v for k, v in self.base.items() if k not in INPUT_FIELDS}, **self.budget}

    def error(self, path: str, message: str, at: str | None = None) -> SweepError:
        """A SweepError naming the line of `path` (or of `at`) in the file."""
        return self.lines.error(path, message, at)

    def where(self, field: str) -> str:
        """The key of the file that set a spec field or input ('base.data', 'budget.max_steps')."""
        name = field.lstrip("-").lower().replace("-", "_")
        if name in INPUT_FIELDS.values():
            return next(f"base.{key}" for key, input_name in INPUT_FIELDS.items() if input_name == name)
        return f"budget.{name}" if name in self.budget else f"base.{name}"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "lines"}
        out["space"] = {p.name: p.to_dict() for p in self.space}
        out["base"] = {k: str(v) if isinstance(v, Path) else v for k, v in self.base.items()}
        return json.loads(json.dumps(out))  # a copy, plain JSON types


def load(path: Path) -> Sweep:
    """Read and check a sweep file; SweepError (an InvalidJob) names the line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.strerror or exc
        raise SweepError("SWEEP_FILE", f"cannot read {path}: {reason}") from None
    return parse(text, path.parent)


def compose(text: str) -> tuple[Any, Lines]:
    """The document and where its keys are, from one pass of the YAML parser (also how a
    job file, `rnnq train -f`, is read: the same refusals, the same floats)."""
    if _is_json(text):  # JSON allows tabs between tokens, YAML does not; in valid JSON they are nowhere else
        text = text.replace("\t", " ")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines = Lines.of(node)  # before constructing: merge keys (<<) are still as written
        return (loader.construct_document(node) if node is not None else None), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweepError("SWEEP_FILE", f"{where}not valid YAML: {problem}") from None
    finally:
        loader.dispose()


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def parse(text: str, root: Path = Path(".")) -> Sweep:
    doc, lines = compose(text)
    if not isinstance(doc, dict):
        raise lines.error("", "expected a mapping with at least `base` and `space`")
    for key in doc:
        if key not in KEYS:
            raise lines.error(str(key), f"unknown key (expected one of {', '.join(KEYS)})")
    for key in ("base", "space"):
        if key not in doc:
            raise lines.error("", f"{key}: required key is missing")
    base = _base(doc["base"], root, lines)
    task = base.pop("task", "lm")
    encoding = _encoding(base.pop("encoding", "utf-8"), lines)
    space = _space(doc["space"], lines)
    objective, direction = _objective(doc, task, lines)
    sampler, seed = _sampler(doc.get("sampler", "tpe"), lines)
    pruner, options = _pruner(doc.get("pruner", "none"), lines)
    budget = _budget(doc.get("budget", {}), lines)
    options = _resource(pruner, options, budget, lines)
    trials = _int(doc.get("trials", 16), "trials", 1, MAX_TRIALS, lines)
    if sampler == "grid":
        trials = min(trials, _grid_size(space, lines))
    sweep = Sweep(base=base, space=space, task=task, name=_name(doc.get("name"), lines), objective=objective,
                  direction=direction, trials=trials, budget=budget, sampler=sampler, seed=seed, pruner=pruner,
                  pruner_options=options, parallel=_int(doc.get("parallel", 2), "parallel", 1, 1000, lines),
                  queue=_queue(doc.get("queue"), lines), encoding=encoding, lines=lines)
    check_space(sweep)
    if "enqueue" in doc:
        sweep = dataclasses.replace(sweep, enqueue=_enqueue(doc["enqueue"], sweep))
    return sweep


def _base(value: Any, root: Path, lines: Lines) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise lines.error("base", "expected a mapping of spec fields")
    base = {str(k).replace("-", "_"): v for k, v in value.items()}
    task = base.get("task", "lm")
    if task not in TASKS:
        raise lines.error("base.task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    if "data" not in base:
        raise lines.error("base", "data: the input file is missing")
    for name in train_spec_class(task).SOURCE_FIELDS:  # resolved against the job store, which a sweep file is not
        if base.get(name) is not None:
            raise lines.error(f"base.{name}", "a sweep cannot start from another job's model yet; use rnnq train")
    for name in INPUT_FIELDS:
        if name in base:
            if not isinstance(base[name], str) or not base[name]:
                raise lines.error(f"base.{name}", "expected a file path (or artifact:KEY)")
            if not base[name].startswith(ARTIFACT):
                base[name] = (root / base[name]).expanduser()
    return base


def _encoding(value: Any, lines: Lines) -> str:
    if not isinstance(value, str):
        raise lines.error("base.encoding", f"expected an encoding's name, got {value!r}")
    try:
        codecs.lookup(value)
    except LookupError:
        raise lines.error("base.encoding", f"unknown encoding {value!r}") from None
    return value


def _param(name: str, value: Any, lines: Lines) -> Param:
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
    integral = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    kind = value.get("type", "int" if integral else "float")
    if kind not in ("int", "float"):
        raise lines.error(f"{where}.type", f"must be int or float, got {kind!r}")
    if kind == "int" and not integral:
        raise lines.error(f"{where}.type", "an int range needs integer low, high and step")
    if not isinstance(log, bool):
        raise lines.error(f"{where}.log", f"expected true or false, got {log!r}")
    if low >= high:
        raise lines.error(where, f"empty range: low {low} is not below high {high}")
    if log and low <= 0:
        raise lines.error(f"{where}.low", f"a log range needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise lines.error(f"{where}.step", "must be > 0, and not combined with log")
    return Param(name, low=low, high=high, step=step, log=log, is_int=kind == "int")


def _known(value: dict[str, Any], known: tuple[str, ...], where: str, lines: Lines) -> None:
    for key in value:
        if key not in known:
            raise lines.error(f"{where}.{key}", f"unknown key (expected {', '.join(known)})")


def _space(value: Any, lines: Lines) -> tuple[Param, ...]:
    if not isinstance(value, dict) or not value:
        raise lines.error("space", "expected a mapping of spec fields to choices or ranges")
    return tuple(_param(str(name).replace("-", "_"), v, lines) for name, v in value.items())


def _objective(doc: dict[str, Any], task: str, lines: Lines) -> tuple[str, str]:
    objective = doc.get("objective", "val_loss")
    if objective not in FIGURES[task]:
        raise lines.error("objective", f"the {task} task does not report {objective!r} at evaluation "
                                       f"(it reports {', '.join(FIGURES[task])})")
    direction = doc.get("direction", "maximize" if objective in MAXIMIZE else "minimize")
    if direction not in ("minimize", "maximize"):
        raise lines.error("direction", f"must be minimize or maximize, got {direction!r}")
    return objective, direction


def _named(value: Any, key: str, names: tuple[str, ...], lines: Lines) -> tuple[str, dict[str, Any]]:
    options: dict[str, Any] = {}
    where = key
    if isinstance(value, dict):
        options, where = dict(value), f"{key}.name"
        value = options.pop("name", None)
    if value not in names:
        raise lines.error(where, f"must be one of {', '.join(names)}, got {value!r}")
    return str(value), options


def _sampler(value: Any, lines: Lines) -> tuple[str, int | None]:
    name, options = _named(value, "sampler", SAMPLERS, lines)
    for key in options:
        if key != "seed":
            raise lines.error(f"sampler.{key}", "unknown option (expected seed)")
    seed = options.get("seed")
    return name, None if seed is None else _int(seed, "sampler.seed", 0, 2**32 - 1, lines)


def _pruner(value: Any, lines: Lines) -> tuple[str, dict[str, Any]]:
    name, options = _named(value, "pruner", PRUNERS, lines)
    for key, v in options.items():
        if key not in PRUNER_OPTIONS[name]:
            known = ", ".join(PRUNER_OPTIONS[name]) or "none"
            raise lines.error(f"pruner.{key}", f"unknown option for {name} (expected {known})")
        if key == "resource":
            if v not in RESOURCES:
                raise lines.error("pruner.resource", f"must be one of {', '.join(RESOURCES)}, got {v!r}")
        elif not (v == "auto" and key != "reduction_factor"):
            _int(v, f"pruner.{key}", 2 if key == "reduction_factor" else 1, 10**12, lines)
    return name, options


def _resource(pruner: str, options: dict[str, Any], budget: dict[str, Any], lines: Lines) -> dict[str, Any]:
    """The pruner's options with its resource settled. Rungs count training seconds when
    the budget is a time budget alone: at equal steps a wide model with long windows has
    trained longer than a narrow one, so step rungs favour what the clock cannot afford.
    In seconds, the first rung defaults to the whole second just above a ninth of the
    budget, so the rungs are at about 1/9 and 1/3 and the next falls strictly past the
    end: a rung at the end, or just short of it, would prune a trial that has cost all
    its seconds (180 s with a first rung of 20 put the third at 180: a trial was pruned
    at its last evaluation). Optuna's 'auto' would take a hundredth of the first trial's
    last step: a second or so, all noise."""
    if pruner == "none":
        return options
    given = budget.get("time_budget")
    seconds = float(given) if isinstance(given, (int, float)) and not isinstance(given, bool) else 0.0
    timed = seconds > 0
    resource = options.get("resource", "seconds" if timed and set(budget) == {"time_budget"} else "steps")
    if resource == "seconds" and not timed:
        raise lines.error("pruner.resource", "seconds needs a budget.time_budget (in seconds, above 0)")
    out = {**options, "resource": resource}
    if resource == "seconds":
        factor = out.get("reduction_factor", 3)
        out.setdefault("min_resource", math.floor(seconds / factor**2) + 1)  # so min * factor**2 > seconds
        if pruner == "hyperband":
            out.setdefault("max_resource", max(int(out["min_resource"]), math.ceil(seconds)))
    return out


def _budget(value: Any, lines: Lines) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise lines.error("budget", f"expected a mapping of {', '.join(BUDGET_FIELDS)}")
    for key in value:
        if key not in BUDGET_FIELDS:
            raise lines.error(f"budget.{key}", f"unknown budget (expected {', '.join(BUDGET_FIELDS)})")
    return dict(value)


def _int(value: Any, key: str, lo: int, hi: int, lines: Lines) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise lines.error(key, f"expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def _name(value: Any, lines: Lines) -> str | None:
    if value is not None and (not isinstance(value, str) or not NAME_RE.match(value)):
        raise lines.error("name", "letters, digits, '.', '_' and '-', at most 64 characters")
    return value


def _queue(value: Any, lines: Lines) -> str | None:
    if value is not None and (not isinstance(value, str) or not NAME_RE.match(value)):
        raise lines.error("queue", f"not a queue name: {value!r}")
    return value


def _grid_size(space: tuple[Param, ...], lines: Lines) -> int:
    size = 1
    for p in space:
        values = p.grid()
        if values is None:
            raise lines.error(f"space.{p.name}", "the grid sampler needs choices or an int range (or a float step)")
        size *= len(values)
    return size


def _enqueue(value: Any, sweep: Sweep) -> tuple[dict[str, Any], ...]:
    """The points to try first, each a mapping of searched fields to values inside the
    space; `base` becomes the base job's own values. A point whose spec is refused, or a
    value the space cannot draw, is refused here, naming its line."""
    if not isinstance(value, list):
        raise sweep.error("enqueue", "expected a list of points: `base`, or mappings of searched fields to values")
    if sweep.sampler == "grid":
        raise sweep.error("enqueue", "the grid sampler tries every point of the grid already")
    if len(value) > sweep.trials:
        raise sweep.error("enqueue", f"{len(value)} points, more than the sweep's {sweep.trials} trials")
    cls = spec_class(sweep.task)
    placeholders = {k: "pending/input" for k in INPUT_FIELDS if k in sweep.base}
    base = cls.from_dict({**sweep.spec_fields(), **placeholders, "task": sweep.task}).to_dict()
    space = {p.name: p for p in sweep.space}
    points = []
    for i, item in enumerate(value):
        where = f"enqueue[{i}]"
        if item == "base":
            point = {name: base[name] for name in space}
        elif isinstance(item, dict) and item:
            point = {str(k).replace("-", "_"): v for k, v in item.items()}
        else:
            raise sweep.error(where, f"expected `base` or a mapping of searched fields to values, got {item!r}")
        for name, v in point.items():
            if name not in space:
                raise sweep.error(f"{where}.{name}", f"not a searched field (the space has {', '.join(space)})")
            if not space[name].contains(v):
                drawn = f"is not one the space can draw ({space[name].describe()})"
                if item == "base":
                    raise sweep.error(where, f"the base job's {name}, {v!r}, {drawn}")
                raise sweep.error(f"{where}.{name}", f"{v!r} {drawn}")
        try:
            cls.from_dict({**base, **point})
        except SpecError as exc:
            raise sweep.error(where, f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
        points.append(point)
    return tuple(points)


def spec_class(task: str) -> type[TrainSpec]:
    return train_spec_class(task)


MAX_CORNERS = 4096  # combinations of extremes checked at submit; past it, only pairs of dimensions


def check_space(sweep: Sweep) -> None:
    """Every combination of the dimensions' extremes is a valid spec, so no trial draws a
    combination its spec refuses (`tie_weights` with `embed` != `hidden`, say). Past
    MAX_CORNERS combinations: each extreme with the base, then every pair of extremes.
    A refusal names the line of a value refused and the values it was combined with."""
    cls = spec_class(sweep.task)
    fields = {f.name for f in dataclasses.fields(cls)}
    base = {**sweep.spec_fields(), **{k: "pending/input" for k in INPUT_FIELDS if k in sweep.base}, "task": sweep.task}
    searched = {p.name for p in sweep.space}
    for p in sweep.space:
        if p.name not in fields or p.name in ("task", *INPUT_FIELDS, *cls.SOURCE_FIELDS):
            raise sweep.error(f"space.{p.name}", f"not a field of a {sweep.task} spec that can be searched")
    extremes = [[(p, place, value) for place, value in p.extremes()] for p in sweep.space]

    def refusal(combination: tuple[Choice, ...], within: dict[str, Any]) -> SpecError | None:
        try:
            cls.from_dict({**within, **{p.name: value for p, _, value in combination}})
        except SpecError as exc:
            return exc
        return None

    # the first corner that passes stands for the dimensions a check leaves out
    reference = next((c for c in itertools.islice(itertools.product(*extremes), MAX_CORNERS)
                      if refusal(c, base) is None), None)
    if reference is None:
        first = next(itertools.product(*extremes))
        exc = refusal(first, base)
        assert exc is not None
        if exc.field not in searched:  # no corner passes, for a field the space does not set
            raise sweep.error(sweep.where(exc.field) if exc.field else "base", exc.message)
        raise _refused(sweep, first, base, refusal)
    within = {**base, **{p.name: value for p, _, value in reference}}
    combinations: Iterable[tuple[Choice, ...]] = itertools.product(*extremes)
    if math.prod(len(e) for e in extremes) > MAX_CORNERS:
        combinations = (pair for a, b in itertools.combinations(extremes, 2) for pair in itertools.product(a, b))
    for combination in combinations:
        if refusal(combination, within) is not None:
            raise _refused(sweep, combination, within, refusal)


Choice = tuple[Param, str, Any]  # a dimension, where its value is written under its key, the value


def _refused(sweep: Sweep, combination: tuple[Choice, ...], within: dict[str, Any],
             refusal: Callable[[tuple[Choice, ...], dict[str, Any]], SpecError | None]) -> SweepError:
    """A refused combination, cut down to the values it cannot do without (each one whose
    removal still leaves it refused is dropped), named by the line of its first value."""
    kept = list(combination)
    for choice in combination:
        rest = tuple(c for c in kept if c is not choice)
        if rest and refusal(rest, within) is not None:
            kept = list(rest)
    exc = refusal(tuple(kept), within)
    assert exc is not None
    first = next((c for c in kept if c[0].name == exc.field), kept[0])
    others = ", ".join(f"{p.name} = {value!r} (line {sweep.lines.line(f'space.{p.name}{place}')})"
                       for p, place, value in kept if p is not first[0])
    why = exc.message if exc.field in (first[0].name, "") else f"{exc.field}: {exc.message}"
    return sweep.error(f"space.{first[0].name}", f"{first[2]!r}{' with ' + others if others else ''}: {why}",
                       at=f"space.{first[0].name}{first[1]}")
