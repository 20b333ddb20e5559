"""The spec of a translation job and submit-time checks of its files; stdlib only.

Two ways to give the parallel text:

    data = source file, target_data = target file     line i of one translates line i of the other
    data = one TSV file, no target_data               "source<TAB>target" per line

Either file may be gzip-compressed (recognised by its magic bytes, not its name).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rnn_tasks.lm.spec import adopt, check_finetune_fields, one_way_why, source_lm
from rnn_tasks.spec import SpecError, TrainedModel, TrainSpec, _between, check_artifact_key, check_tokenizer_fields

TOKENIZERS = ("bpe", "word")
GZIP_MAGIC = b"\x1f\x8b"
# Errors name spec fields; the CLI maps them to its flags (cli/errors.py).
DATA_FIELD = "data"
TARGET_FIELD = "target_data"


@dataclass(frozen=True)
class TranslateSpec(TrainSpec):
    """A sequence-to-sequence translator: recurrent encoder, attentive recurrent decoder.

    Defaults suit a CPU: a 1-layer GRU of 256 with a bidirectional encoder, one BPE
    vocabulary and one embedding matrix for both languages and the output layer, and a
    moving average of the weights, trains a Multi30k-sized corpus (29k pairs) to useful
    BLEU in tens of minutes on two cores (README, Benchmarks).
    """

    TASK: ClassVar[str] = "translate"
    PREDICT_OPTIONS: ClassVar[tuple[str, ...]] = ("beam", "max_len")
    EVAL_OPTIONS: ClassVar[tuple[str, ...]] = ("beam",)
    SOURCE_FIELDS: ClassVar[tuple[str, ...]] = ("init_from",)

    task: str = "translate"
    hidden: int = 256  # decoder state size; each encoder direction has hidden // 2 when bidirectional
    embed: int = 256  # source and target embedding size
    dropout: float = 0.2
    batch_size: int = 64  # sentence pairs per step
    lr: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 500  # each evaluation greedily decodes up to 200 validation sentences
    val_fraction: float = 0.05  # the last pairs are held out
    target_data: str | None = None  # artifact key of the line-aligned target file; None: DATA is a TSV
    tokenizer: str = "bpe"  # bpe | word, one tokenizer per language
    vocab_size: int = 10000  # bpe: size of the one vocabulary (joint_vocab false: of each language's)
    min_freq: int = 1  # word: words seen fewer times become <unk>
    max_vocab: int | None = None  # word: keep only the most frequent words
    max_len: int = 64  # tokens per sentence; longer training pairs are dropped (and counted)
    attention: bool = True  # Luong "general" attention over the encoder states
    bidirectional: bool = True  # read the source both ways
    beam: int = 4  # beam width of the final evaluation (1 = greedy)
    teacher_forcing: float = 1.0  # probability of feeding the reference token (1 keeps training parallel in time)
    label_smoothing: float = 0.1  # of the training loss; val_loss is plain cross-entropy
    joint_vocab: bool = True  # one tokenizer fitted on both sides' training text, one embedding for both
    tie_embeddings: bool = True  # the decoder's output layer is its embedding
    ema: float = 0.999  # evaluate and keep the weights' moving average (rnn_tasks.loop)
    # The encoder from a language model (ULMFiT, Howard and Ruder 2018; see check_sources).
    init_from: str | None = None  # job id of a finished word/BPE LM: the source tokenizer, encoder embedding and rnn
    lr_decay: float = 2.6  # init_from: each encoder group below the new layers trains at the lr of the one above / this
    unfreeze: float = 0.5  # init_from: share of training over which encoder groups thaw, top first (0: all at once)

    def input_keys(self) -> dict[str, str]:
        if self.target_data is None:
            return {"data": self.data}
        return {"data": self.data, "target": self.target_data}

    def validate(self) -> None:
        if self.target_data is not None:  # before the base class, which names it by its input key
            check_artifact_key("target_data", self.target_data)
        super().validate()
        check_tokenizer_fields(self, TOKENIZERS, min_vocab_size=16)
        _between("max_len", self.max_len, 1, 10_000)
        _between("beam", self.beam, 1, 64)
        _between("teacher_forcing", self.teacher_forcing, 0.0, 1.0)
        _between("label_smoothing", self.label_smoothing, 0.0, 0.5)
        if self.bidirectional and self.hidden % 2:
            raise SpecError("hidden", f"must be even with a bidirectional encoder, got {self.hidden}")
        if self.joint_vocab and self.init_from is not None:  # what check_sources adopts, for specs that skipped it
            raise SpecError("joint_vocab", f"must be false with init_from: {_JOINT_WHY}")
        check_finetune_fields(self)


_JOINT_WHY = "the source side reads with the language model's own tokenizer, the target side with its own"


def check_sources(fields: dict[str, Any], find: Callable[[str, str], TrainedModel]) -> dict[str, Any]:
    """Submit-time check of init_from (a job id or name): a finished word or BPE language
    model (rnn_tasks.lm.spec.source_lm) whose tokenizer reads the source side and whose
    embedding and recurrent layers start the encoder's forward direction. Its arch, embed
    and layers become the translator's, joint_vocab false, and hidden as the encoder needs it: the LM's,
    twice that with a bidirectional encoder (each direction has hidden // 2 units). An LM
    of several layers starts only a unidirectional encoder: above the first layer, a
    bidirectional one's layers read both directions' states. A field the user set to
    something else is refused, naming it."""
    if fields.get("init_from") is None:
        return fields
    lm_id, lm = source_lm(str(fields["init_from"]), find, "a translator's encoder")
    shape: dict[str, Any] = {"arch": lm.arch, "embed": lm.embed, "layers": lm.layers, "joint_vocab": False}
    why = {"bidirectional": one_way_why(f"language model {lm_id}", lm.layers, "encoder"),
           "joint_vocab": _JOINT_WHY}
    if lm.layers > 1:
        shape["bidirectional"] = False
    if shape.get("bidirectional", fields.get("bidirectional", TranslateSpec.bidirectional)):
        shape["hidden"] = 2 * lm.hidden
        why["hidden"] = (f"each direction of the bidirectional encoder has hidden // 2 units, and language model "
                         f"{lm_id} has hidden {lm.hidden} (with bidirectional false: hidden {lm.hidden})")
    else:
        shape["hidden"] = lm.hidden
    return adopt(fields, lm_id, shape, why)


def read_lines(raw: bytes, field: str) -> list[str]:
    """The lines of a UTF-8 text file, gunzipped first if it starts with the gzip magic.

    Lines end at "\\n" only (a trailing "\\r" is dropped): str.splitlines would also split
    at characters such as U+2028 and silently misalign a parallel corpus.
    """
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise SpecError(field, f"looks gzip-compressed but does not decompress: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(field, f"is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def split_tsv(lines: list[str], field: str = DATA_FIELD) -> tuple[list[str], list[str]]:
    """Source and target columns of "source<TAB>target" lines."""
    sources, targets = [], []
    for number, line in enumerate(lines, 1):
        tabs = line.count("\t")
        if tabs != 1:
            raise SpecError(field, f"line {number} has {tabs} tabs; each line must be source<TAB>target "
                                   "(or give the target-language file separately, line-aligned)")
        source, target = line.split("\t")
        sources.append(source)
        targets.append(target)
    return sources, targets


def read_pairs(files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """Source and target sentences of a job's files ("data", and "target" when separate)."""
    sources = read_lines(files["data"], DATA_FIELD)
    if "target" not in files:
        return split_tsv(sources)
    targets = read_lines(files["target"], TARGET_FIELD)
    if len(sources) != len(targets):
        raise SpecError(TARGET_FIELD, f"misaligned: the source has {len(sources)} lines and the target "
                                      f"{len(targets)}; line i of one must translate line i of the other")
    return sources, targets


def check_eval_inputs(files: dict[str, bytes]) -> None:
    """Submit-time check of an evaluation's files: references come as a target file or
    as the second column of a TSV of pairs (plain or gzip), every line one pair."""
    if "target" in files:
        return
    lines = read_lines(files["data"], "data")
    if not any("\t" in line for line in lines[:100]):
        raise SpecError("target", "translation needs the reference translations, or a TSV of pairs as data")
    split_tsv(lines)  # SpecError naming the first line that is not one pair


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """Training and validation pairs: the last int(n * val_fraction) pairs are held out."""
    n_val = int(n * val_fraction)
    return n - n_val, n_val


def min_pairs(val_fraction: float) -> int:
    """Fewest pairs that leave at least one training and one validation pair."""
    n = 2
    while min(split_sizes(n, val_fraction)) < 1:
        n += 1
    return n


def load_pairs(spec: TranslateSpec, files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """The job's source and target sentences, after the submit-time checks."""
    sources, targets = read_pairs(files)
    need = min_pairs(spec.val_fraction)
    if len(sources) < need:
        raise SpecError(DATA_FIELD, f"has {len(sources)} sentence pairs; at least {need} are needed to hold out "
                                    f"val_fraction {spec.val_fraction:g} for validation")
    return sources, targets


def check_inputs(spec: TranslateSpec, files: dict[str, bytes]) -> None:
    """Submit-time checks: readable, aligned, well-formed, and enough pairs to split."""
    load_pairs(spec, files)
