"""The language model's training spec (characters, words or BPE tokens), and the
submit-time check of a job that starts from one (init_from; rnn_tasks.finetune at run
time); stdlib only."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rnn_tasks.spec import SpecError, TrainedModel, TrainSpec, _between, check_tokenizer_fields, train_spec_class

__all__ = ["LMSpec", "adopt", "check_finetune_fields", "one_way_why", "source_lm"]


@dataclass(frozen=True)
class LMSpec(TrainSpec):
    """A language model (text generation). Defaults are rnnq's CPU-tuned char-LM config."""

    TASK: ClassVar[str] = "lm"
    TEXT_INPUT: ClassVar[bool] = True
    GENERATES: ClassVar[bool] = True
    CPU_BF16: ClassVar[bool] = True  # equal windows, never packed

    task: str = "lm"
    # LSTM 1x512 on 64-step windows at lr 1.2e-2: equal to the old GRU 1x512 default (seq 128,
    # lr 8e-3) in fp32, and ahead of it where bf16 runs, on GPUs and CPUs with AMX or AVX512-BF16, 1.6-2x
    # as fast there (README, Benchmarks). A GRU wants the longer windows: on 64 it lost 0.11.
    arch: str = "lstm"
    hidden: int = 512
    lr: float = 1.2e-2
    # AdamW's decoupled decay on the matrices. Where bf16 runs, the default reads tinyshakespeare
    # 9 times in 180 s and overfits; 0.1 took it from 1.48 nats/char to 1.43-1.45, and helped in
    # fp32 at 5 epochs too (README, bf16 on a CPU).
    weight_decay: float = 0.1
    tokenizer: str = "char"  # char | word | bpe
    min_freq: int = 1  # word: words seen fewer times become <unk>
    max_vocab: int | None = None  # word: keep only the most frequent words
    vocab_size: int = 8000  # bpe: target vocabulary size
    # word/bpe: the tokenizer folds case ("Great" and "great" are one token), and so reads
    # every model started from this LM (init_from) its text.
    lowercase: bool = False
    tie_weights: bool = False  # share the embedding and output matrices
    seq_len: int = 64  # truncated-BPTT window; state is carried across windows

    def validate(self) -> None:
        super().validate()
        check_tokenizer_fields(self)
        if self.lowercase and self.tokenizer == "char":
            raise SpecError("lowercase", "needs a word or BPE tokenizer; a character model keeps case")
        if self.tie_weights and self.embed != self.hidden:
            raise SpecError("tie_weights", f"needs embed == hidden, got {self.embed} and {self.hidden}")
        _between("seq_len", self.seq_len, 1, 1_000_000)


def check_inputs(spec: LMSpec, files: dict[str, bytes]) -> None:
    """Submit-time check of the corpus: UTF-8 text that fills a training window and a
    held-out part, counted in the run's own tokens (rnn_tasks.lm.windows)."""
    from rnn_tasks.lm import windows  # stdlib (and HF tokenizers for a short BPE corpus)

    windows.check("the corpus", _utf8(files["data"]), spec)


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("data", f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def unseen_chars(text: str, model: TrainedModel) -> str:
    """The characters of `text` a character model never saw in training (its result's
    "vocab"), in order of first use; '' for word and BPE models, which read any text."""
    chars = model.result.get("vocab")
    if chars is None:
        return ""
    known = set(chars)
    return "".join(dict.fromkeys(c for c in text if c not in known))


def check_inference_input(raw: bytes, model: TrainedModel, purpose: str, options: dict[str, Any]) -> None:
    """Submit-time check of eval's data: UTF-8 text and, for a character model, only the
    characters it saw in training (the training result's "vocab"); word models read unseen
    words as <unk>, BPE models read any text."""
    unseen = unseen_chars(_utf8(raw), model)
    if unseen:
        raise SpecError("data", f"characters the model never saw in training: {unseen!r}")


def source_lm(source: str, find: Callable[[str, str], TrainedModel], model: str) -> tuple[str, LMSpec]:
    """The job id and spec of the word or BPE language model that init_from names (a job
    id or name, looked up by `find`); `model` names what starts from it ("a classifier").

    Character LMs are refused: their ids have no <pad>, <unk>, <bos> or <eos>, which a
    classifier's and a translator's batches need, and they transfer little to sentences.
    """
    lm = find(source, "init_from")
    task = str(lm.spec.get("task", "lm"))
    if not train_spec_class(task).GENERATES:
        raise SpecError("init_from", f"job {lm.id} trained a {task} model, not a language model")
    spec = LMSpec.from_dict({**lm.spec, "task": "lm"})
    if spec.tokenizer == "char":
        raise SpecError("init_from", f"language model {lm.id} reads characters; {model} starts only from a "
                                     "word or BPE language model")
    return lm.id, spec


def adopt(fields: dict[str, Any], lm_id: str, adopted: Mapping[str, Any],
          why: Mapping[str, str] | None = None) -> dict[str, Any]:
    """fields with `adopted` (what the language model lm_id decides) and init_from set to
    lm_id; a field the user set to something else is refused naming it, with why[field]
    (by default: the LM has that value)."""
    for name, value in adopted.items():
        if name in fields and fields[name] != value:
            reason = (why or {}).get(name, f"language model {lm_id} has {name} {value!r}")
            raise SpecError(name, f"is {fields[name]!r}, but with init_from it must be {value!r}: {reason}")
    return {**fields, **adopted, "init_from": lm_id}


def one_way_why(lm: str, layers: int, model: str) -> str:
    """Why a model started from an LM of several layers reads one way: its layers are the
    LM's forward direction, and a bidirectional layer above the first reads both."""
    return (f"{lm} has {layers} layers, and above the first a bidirectional {model}'s layers read both directions' "
            "states, the language model's only its own")


def check_finetune_fields(spec: Any) -> None:
    """The fine-tuning fields of a spec that can start from a language model (lr_decay, unfreeze)."""
    _between("lr_decay", spec.lr_decay, 1.0, 100.0)
    _between("unfreeze", spec.unfreeze, 0.0, 1.0)
