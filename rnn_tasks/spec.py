"""Job specifications: frozen, JSON-serialisable, validated; stdlib only.

The CLI builds a spec from flags and validates it before anything touches Redis; the
worker rebuilds it from the job record; the checkpoint stores it beside the weights.
Because this module imports nothing but the standard library, the CLI can validate a
job without importing torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

from rnn_tasks.errors import InputError

ARCHES = ("lstm", "gru", "rnn")
# task -> "module:Class" of its TrainSpec subclass (stdlib-only modules, imported lazily).
TASKS = {
    "lm": "rnn_tasks.lm.spec:LMSpec",
    "classify": "rnn_tasks.classify.spec:ClassifySpec",
    "forecast": "rnn_tasks.forecast.spec:ForecastSpec",
    "translate": "rnn_tasks.translate.spec:TranslateSpec",
    "transcribe": "rnn_tasks.transcribe.spec:TranscribeSpec",
}
TOKENIZERS = ("char", "word", "bpe")
DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,3})$")  # the CLI's --device checks this too
# Artifact keys are produced by rnnq itself (content hashes, job ids); anything else,
# such as "../x" or an absolute path, is refused before it can reach a filesystem.
ARTIFACT_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$")
JOB_ID_RE = re.compile(r"^[0-9a-f]{12}$")


class SpecError(InputError):
    """A spec field is missing, unknown, of the wrong type or out of range."""

    field: str

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message, field_name)


S = TypeVar("S", bound="_Spec")


@dataclass(frozen=True)
class _Spec:
    """Shared JSON round trip and type checking for the concrete specs below."""

    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        self.validate()

    def validate(self) -> None:
        """Range checks; subclasses raise SpecError naming the field."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        if not isinstance(data, dict):
            raise SpecError("spec", f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                task = getattr(cls, "TASK", "")
                raise SpecError(str(key), f"does not apply to task {task}" if task else f"unknown field for a {cls.kind} spec")
        try:
            return cls(**data)
        except TypeError as exc:  # a required field is missing
            missing = re.findall(r"'(\w+)'", str(exc))
            raise SpecError(missing[0] if missing else "spec", "required field is missing") from None

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError("spec", f"not valid JSON: {exc}") from None
        return cls.from_dict(data)


_SIMPLE_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _check_type(name: str, value: Any, annotation: Any) -> None:
    """Check a value against the small set of annotations the specs use."""
    options = [a.strip() for a in str(annotation).split("|")]
    if value is None:
        if "None" in options:
            return
        raise SpecError(name, "must not be null")
    for option in options:
        if option.startswith("tuple"):
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return
            continue
        py = _SIMPLE_TYPES.get(option)
        if py is None:
            continue
        if py is bool:
            if isinstance(value, bool):
                return
        elif py is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return
        elif py is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise SpecError(name, "must be a finite number")
                return
        elif isinstance(value, py):
            return
    wanted = " or ".join(o for o in options if o != "None")
    raise SpecError(name, f"expected {wanted}, got {type(value).__name__} {value!r}")


def _between(name: str, value: float | None, lo: float, hi: float, *, lo_open: bool = False) -> None:
    if value is None:
        return
    if value < lo or value > hi or (lo_open and value == lo):
        left = "(" if lo_open else "["
        raise SpecError(name, f"must be in {left}{lo:g}, {hi:g}], got {value!r}")


def check_tokenizer_fields(spec: Any, kinds: tuple[str, ...] = TOKENIZERS, min_vocab_size: int = 2) -> None:
    """The tokenizer fields a text task's spec shares (tokenizer, min_freq, max_vocab,
    vocab_size), checked in one place; each task keeps its own defaults."""
    if spec.tokenizer not in kinds:
        raise SpecError("tokenizer", f"must be one of {', '.join(kinds)}, got {spec.tokenizer!r}")
    _between("min_freq", spec.min_freq, 1, 10**9)
    _between("max_vocab", spec.max_vocab, 2, 10**7)
    _between("vocab_size", spec.vocab_size, min_vocab_size, 10**6)


def min_corpus_chars(seq_len: int, val_fraction: float) -> int:
    """Smallest corpus that leaves seq_len + 1 training and 2 validation characters."""
    total = seq_len + 1
    while int(total * val_fraction) < 2 or total - int(total * val_fraction) < seq_len + 1:
        total += 1
    return total


def check_artifact_key(name: str, key: str) -> None:
    if not ARTIFACT_KEY_RE.match(key) or ".." in key.split("/"):
        raise SpecError(name, f"not a valid artifact key: {key!r}")


@dataclass(frozen=True)
class TrainSpec(_Spec):
    """What every training task shares: the input, the recurrent core, optimisation,
    stop conditions, evaluation and checkpoints. Each task's spec adds its own fields.

    Stop conditions combine: training ends at whichever of max_steps, epochs and
    time_budget comes first; with none of them set it trains for one epoch.
    """

    kind: ClassVar[str] = "train"
    TASK: ClassVar[str] = ""
    # What "data" holds, which decides how the CLI reads it: a text corpus (decoded with
    # its --encoding, sized against a worker's memory), a speech corpus (a manifest or a
    # folder of recordings, bundled), or neither (any file, as bytes).
    TEXT_INPUT: ClassVar[bool] = False
    AUDIO_INPUT: ClassVar[bool] = False
    # What the task's trained models do beyond evaluate, and which fields of a predict or
    # eval request (PredictSpec, EvalSpec) they take; submit refuses the others, naming
    # them, and the worker passes only these to the task.
    GENERATES: ClassVar[bool] = False  # continues text (generate jobs) instead of predict
    PREDICT_OPTIONS: ClassVar[tuple[str, ...]] = ()
    EVAL_OPTIONS: ClassVar[tuple[str, ...]] = ()
    PREDICT_FROM_TRAINING_DATA: ClassVar[bool] = False  # predict with no inputs continues the training data
    # Fields naming another finished training job (an id once submitted) whose best checkpoint
    # a fresh run starts from; submit resolves and checks them (the spec module's check_sources).
    SOURCE_FIELDS: ClassVar[tuple[str, ...]] = ()
    # Whether a wide LSTM of this task may run under bf16 autocast on a CPU with bf16
    # instructions (AMX or AVX512-BF16; rnn_tasks.device): only where its sequences are never packed. Packed batches take
    # kernels that ran slower in bf16 (a classifier's 256-wide biLSTM 61 s against 46 s).
    CPU_BF16: ClassVar[bool] = False

    data: str  # artifact key of the input (content-addressed, uploaded by the CLI)
    task: str = ""
    arch: str = "gru"  # lstm | gru | rnn
    layers: int = 1  # stacked recurrent layers
    hidden: int = 256  # recurrent state size
    embed: int = 64  # embedding size
    dropout: float = 0.0  # on embeddings, between layers and before the head
    batch_size: int = 32
    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay (L2) on weight matrices
    l1: float = 0.0  # L1 penalty coefficient added to the loss
    clip: float | None = 1.0  # gradient-norm clip; null disables
    warmup_steps: int = 50  # linear warmup, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    ema: float = 0.0  # > 0: evaluate and keep as best an exponential moving average of the weights, this decay a step
    max_steps: int | None = None
    epochs: float | None = None
    time_budget: float | None = None  # seconds of training (evaluation excluded)
    eval_every: int = 200  # steps between validation passes
    eval_seconds: float | None = None  # and at least this often in training seconds (a time budget's own unit)
    val_fraction: float = 0.1  # the last part of the input held out for validation
    patience: int | None = 5  # evaluations without improvement before early stop
    checkpoint_every: int = 500  # steps between resume checkpoints (also at every evaluation)
    checkpoint_seconds: float = 300.0  # and at least this often in training time
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA, and on bf16 CPUs (AMX, AVX512-BF16) for an unpacked LSTM of 256+ units (CPU_BF16)

    def __post_init__(self) -> None:
        if self.task == "":
            object.__setattr__(self, "task", self.TASK)
        super().__post_init__()

    def input_keys(self) -> dict[str, str]:
        """Named inputs the worker loads from the artifact store."""
        return {"data": self.data}

    def source_jobs(self) -> dict[str, str]:
        """Named training jobs whose best checkpoints the worker gives a fresh run as input files."""
        return {name: getattr(self, name) for name in self.SOURCE_FIELDS if getattr(self, name) is not None}

    def validate(self) -> None:
        for name, key in self.input_keys().items():
            check_artifact_key(name, key)
        for name, job_id in self.source_jobs().items():
            if not JOB_ID_RE.match(job_id):
                raise SpecError(name, f"not a job id: {job_id!r}")
        if self.task != self.TASK:
            raise SpecError("task", f"must be {self.TASK!r} for a {type(self).__name__}, got {self.task!r}")
        if self.arch not in ARCHES:
            raise SpecError("arch", f"must be one of {', '.join(ARCHES)}, got {self.arch!r}")
        _between("layers", self.layers, 1, 32)
        _between("hidden", self.hidden, 1, 16384)
        _between("embed", self.embed, 1, 16384)
        _between("dropout", self.dropout, 0.0, 0.95)
        _between("batch_size", self.batch_size, 1, 1_000_000)
        _between("lr", self.lr, 0.0, 10.0, lo_open=True)
        _between("weight_decay", self.weight_decay, 0.0, 10.0)
        _between("l1", self.l1, 0.0, 10.0)
        _between("clip", self.clip, 0.0, 1e6, lo_open=True)
        _between("warmup_steps", self.warmup_steps, 0, 10**9)
        _between("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _between("ema", self.ema, 0.0, 0.99999)
        _between("max_steps", self.max_steps, 1, 10**12)
        _between("epochs", self.epochs, 0.0, 1e6, lo_open=True)
        _between("time_budget", self.time_budget, 0.0, 1e8, lo_open=True)
        _between("eval_every", self.eval_every, 1, 10**12)
        _between("eval_seconds", self.eval_seconds, 0.0, 1e8, lo_open=True)
        _between("val_fraction", self.val_fraction, 0.0, 0.5, lo_open=True)
        _between("patience", self.patience, 1, 10**9)
        _between("checkpoint_every", self.checkpoint_every, 1, 10**12)
        _between("checkpoint_seconds", self.checkpoint_seconds, 0.0, 1e8, lo_open=True)
        _between("seed", self.seed, 0, 2**63 - 1)
        if not DEVICE_RE.match(self.device):
            raise SpecError("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


def train_spec_class(task: str) -> type[TrainSpec]:
    if task not in TASKS:
        raise SpecError("task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    module, _, name = TASKS[task].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TrainedModel:
    """A finished training job as a task's submit-time request check sees it (see
    check_request in rnn_tasks.task): no job store, just what the job recorded."""

    id: str
    spec: dict[str, Any]
    result: dict[str, Any]  # the training's figures (vocab, alphabet, ...)


def train_spec_from_dict(data: Any) -> TrainSpec:
    """The spec of a training job of any task (by its "task" field; default "lm")."""
    if not isinstance(data, dict):
        raise SpecError("spec", f"expected a JSON object, got {type(data).__name__}")
    task = data.get("task") or "lm"
    if not isinstance(task, str):
        raise SpecError("task", f"expected str, got {type(task).__name__}")
    return train_spec_class(task).from_dict({**data, "task": task})


@dataclass(frozen=True)
class GenerateSpec(_Spec):
    """Sample text from the checkpoint of a finished training job."""

    kind: ClassVar[str] = "generate"

    source: str  # job id of the training job whose best checkpoint is sampled
    prompts: tuple[str, ...] = field(default=("\n",))
    max_tokens: int = 200  # new characters per prompt
    temperature: float = 1.0  # 0 means greedy
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.prompts, list):
            object.__setattr__(self, "prompts", tuple(self.prompts))
        super().__post_init__()

    def validate(self) -> None:
        if not JOB_ID_RE.match(self.source):
            raise SpecError("source", f"not a job id: {self.source!r}")
        if not 1 <= len(self.prompts) <= 4096:
            raise SpecError("prompts", f"give between 1 and 4096 prompts, got {len(self.prompts)}")
        for i, prompt in enumerate(self.prompts):
            if not isinstance(prompt, str) or not prompt:
                raise SpecError(f"prompts[{i}]", "must be a non-empty string")
            if len(prompt) > 100_000:
                raise SpecError(f"prompts[{i}]", "longer than 100000 characters")
        _between("max_tokens", self.max_tokens, 1, 1_000_000)
        _between("temperature", self.temperature, 0.0, 100.0)
        _between("top_k", self.top_k, 1, 10**9)
        _between("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        _between("seed", self.seed, 0, 2**63 - 1)
        if not DEVICE_RE.match(self.device):
            raise SpecError("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["prompts"] = list(self.prompts)
        return data


@dataclass(frozen=True)
class PredictSpec(_Spec):
    """Batch inference with a trained classify, forecast or translate model."""

    kind: ClassVar[str] = "predict"

    source: str  # job id of the training job whose best checkpoint is used
    input: str | None = None  # artifact key of the uploaded input file
    texts: tuple[str, ...] = ()  # inline inputs (one per --text), instead of a file
    format: str = "lines"  # lines: one input per line | csv: the training file's layout
    beam: int | None = None  # translate, transcribe: beam width (1 = greedy); default the model's
    max_len: int | None = None  # translate: longest output in tokens
    lm: str | None = None  # transcribe: job id of a character LM fused into the beam search
    lm_weight: float | None = None  # transcribe: weight of the LM's log-probabilities
    lm_bonus: float | None = None  # transcribe: log-score added per character (offsets the LM's short bias)
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.texts, list):
            object.__setattr__(self, "texts", tuple(self.texts))
        super().__post_init__()

    def validate(self) -> None:
        if not JOB_ID_RE.match(self.source):
            raise SpecError("source", f"not a job id: {self.source!r}")
        if self.input is not None:
            check_artifact_key("input", self.input)
            if self.texts:
                raise SpecError("texts", "give an input file or texts, not both")
        if len(self.texts) > 100_000:
            raise SpecError("texts", f"at most 100000 texts, got {len(self.texts)}")
        for i, text in enumerate(self.texts):
            if not text.strip():
                raise SpecError(f"texts[{i}]", "must not be empty")
        if self.format not in ("lines", "csv"):
            raise SpecError("format", f"must be lines or csv, got {self.format!r}")
        _between("beam", self.beam, 1, 64)
        _between("max_len", self.max_len, 1, 10_000)
        _check_lm(self.lm, self.lm_weight, self.lm_bonus)
        if not DEVICE_RE.match(self.device):
            raise SpecError("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["texts"] = list(self.texts)
        return data


@dataclass(frozen=True)
class EvalSpec(_Spec):
    """Figures of a trained model on new data, stored with the evaluation job."""

    kind: ClassVar[str] = "eval"

    source: str  # job id of the training job whose best checkpoint is evaluated
    data: str  # artifact key of the data, laid out like the training input
    target: str | None = None  # translate: artifact key of the reference translations
    beam: int | None = None  # translate: beam width for the BLEU/chrF decode; transcribe: for CER/WER
    lm: str | None = None  # transcribe: job id of a character LM fused into the beam search
    lm_weight: float | None = None  # transcribe: weight of the LM's log-probabilities
    lm_bonus: float | None = None  # transcribe: log-score added per character
    device: str = "auto"

    def validate(self) -> None:
        if not JOB_ID_RE.match(self.source):
            raise SpecError("source", f"not a job id: {self.source!r}")
        check_artifact_key("data", self.data)
        if self.target is not None:
            check_artifact_key("target", self.target)
        _between("beam", self.beam, 1, 64)
        _check_lm(self.lm, self.lm_weight, self.lm_bonus)
        if not DEVICE_RE.match(self.device):
            raise SpecError("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


def _check_lm(lm: str | None, weight: float | None, bonus: float | None) -> None:
    if lm is not None and not JOB_ID_RE.match(lm):
        raise SpecError("lm", f"not a job id: {lm!r}")
    if lm is None and (weight is not None or bonus is not None):
        raise SpecError("lm_weight" if weight is not None else "lm_bonus", "needs a language model (lm)")
    _between("lm_weight", weight, 0.0, 10.0)
    _between("lm_bonus", bonus, -20.0, 20.0)
