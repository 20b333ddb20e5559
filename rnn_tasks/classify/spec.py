"""Text classification (e.g. sentiment) spec and submit-time input checks; stdlib only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple

from rnn_tasks import delimited
from rnn_tasks.classify import table
from rnn_tasks.lm.spec import adopt, check_finetune_fields, one_way_why, source_lm
from rnn_tasks.spec import SpecError, TrainedModel, TrainSpec, _between, check_tokenizer_fields

POOLINGS = ("mean", "max", "last")
CLASS_WEIGHTS = ("balanced", "none")
# Spellings of a tab a shell user may type for --delimiter.
_TAB_ALIASES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}


@dataclass(frozen=True)
class ClassifySpec(TrainSpec):
    """Labelled texts in a CSV/TSV file -> a recurrent classifier.

    Defaults are tuned for sentence sentiment on CPU (benchmarks/quality_classify.py, UCI
    sentiment sentences, 2,400 training rows, mean held-out accuracy over 5 seeds):
    biLSTM + max pooling 0.833, biGRU + max 0.824, biLSTM + mean 0.814, biGRU + mean
    0.809; min_freq 2 beat 1 (rare words as <unk> generalise) by ~2 points; lr 1e-2 for
    8 epochs beat 3e-3 for 10; 128-wide layers and token dropout did not help. About 20 s
    of training on one CPU core.
    """

    TASK: ClassVar[str] = "classify"
    PREDICT_OPTIONS: ClassVar[tuple[str, ...]] = ("format",)
    SOURCE_FIELDS: ClassVar[tuple[str, ...]] = ("init_from",)

    task: str = "classify"
    # Common fields re-tuned for a few thousand sentences; see the class docstring.
    arch: str = "lstm"
    hidden: int = 64  # per direction
    embed: int = 64
    dropout: float = 0.5  # small data: heavy dropout on embeddings and before the head
    lr: float = 1e-2
    weight_decay: float = 0.01
    epochs: float | None = 8.0  # the cosine schedule anneals over these; early stopping keeps the best
    eval_every: int = 50  # ~ once per epoch at 2,000 rows / batch 32
    patience: int | None = 8
    warmup_steps: int = 20
    # Task fields.
    text_column: str = "text"  # header name, or a 0-based index such as "0" for a file without header
    label_column: str = "label"  # header name or 0-based index; labels are any strings
    delimiter: str | None = None  # None: detect among , TAB ; | (csv.Sniffer)
    header: bool | None = None  # None: yes when a column is given by name, else detected from the labels
    tokenizer: str = "word"  # word | char | bpe, fitted on the training split only
    lowercase: bool = True  # fold case before tokenizing: "Great" and "great" share an embedding
    min_freq: int = 2  # word: words seen fewer times in training become <unk> (bpe: pair frequency)
    max_vocab: int | None = None  # word: keep only the most frequent words
    vocab_size: int = 8000  # bpe: target vocabulary size
    max_len: int = 256  # tokens kept per text (the first ones)
    token_dropout: float = 0.0  # training only: each token becomes <unk> with this chance (rare-word robustness)
    bidirectional: bool = True  # read each text both ways
    pooling: str = "max"  # max | mean (over real tokens) | last (final states of both directions)
    class_weights: str = "balanced"  # balanced: loss weight n / (classes * count) per class; none
    # Networks averaged (different initial weights, the same batches): 5 cost 5x a small
    # model's seconds, and on 2,000-3,000 reviews gained 1-3 points of accuracy in domain
    # and on unseen domains (README, Quality); set 1 for large data.
    ensemble: int = 5
    # Transfer from a language model (ULMFiT, Howard and Ruder 2018; see check_sources).
    init_from: str | None = None  # job id of a finished word/BPE LM whose embedding and recurrent layers start this one
    # ULMFiT's schedule (lr_decay 2.6, unfreeze 0.5) lost to training every layer at one rate
    # from the start with each of three LMs tried, by 6-11 points (README, Quality); it is there
    # to set, not the default.
    lr_decay: float = 1.0  # init_from: each layer group below the head trains at the lr of the one above / this
    unfreeze: float = 0.0  # init_from: share of training over which groups thaw, head first (0: all from the start)

    def __post_init__(self) -> None:
        if self.delimiter in _TAB_ALIASES:
            object.__setattr__(self, "delimiter", _TAB_ALIASES[self.delimiter])
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        for name in ("text_column", "label_column"):
            column = getattr(self, name)
            if not column.strip():
                raise SpecError(name, "must name a column or give its 0-based index")
            if self.header is False and not table.is_index(column):
                raise SpecError(name, f"the file has no header (header=false), so give a 0-based index, not {column!r}")
        if self.text_column.strip() == self.label_column.strip():
            raise SpecError("label_column", f"must differ from text_column, both are {self.text_column!r}")
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '\r\n"'):
            raise SpecError("delimiter", f"must be one character such as , or TAB (\\t), got {self.delimiter!r}")
        check_tokenizer_fields(self)
        _between("max_len", self.max_len, 1, 1_000_000)
        _between("token_dropout", self.token_dropout, 0.0, 0.95)
        _between("ensemble", self.ensemble, 1, 100)
        if self.pooling not in POOLINGS:
            raise SpecError("pooling", f"must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise SpecError("class_weights", f"must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weights!r}")
        check_finetune_fields(self)
        if self.init_from is not None and self.tokenizer == "char":
            raise SpecError("tokenizer", "init_from needs a word or BPE language model")


_SHAPE = ("tokenizer", "arch", "embed", "hidden", "layers", "lowercase")  # taken from the LM's spec


def check_sources(fields: dict[str, Any], find: Callable[[str, str], TrainedModel]) -> dict[str, Any]:
    """Submit-time check of init_from (a job id or name): a finished word or BPE language
    model (rnn_tasks.lm.spec.source_lm). Its tokenizer (with its case folding) and shape
    become the classifier's; the LM's layers start the forward direction, and a
    bidirectional classifier's backward direction starts fresh, which an LM of several
    layers cannot start (above the first, a bidirectional layer reads both directions'
    states). A field the user set to something else is refused, naming it. Returns the
    fields with the LM's job id."""
    if fields.get("init_from") is None:
        return fields
    lm_id, spec = source_lm(str(fields["init_from"]), find, "a classifier")
    shape = {name: getattr(spec, name) for name in _SHAPE}
    why = {"lowercase": f"the classifier reads text as language model {lm_id}'s tokenizer does, with lowercase "
                        f"{spec.lowercase}",
           "bidirectional": one_way_why(f"language model {lm_id}", spec.layers, "classifier")}
    if spec.layers > 1:
        shape["bidirectional"] = False
    return adopt(fields, lm_id, shape, why)


def read_labelled(spec: ClassifySpec, raw: bytes, field: str = "DATA") -> tuple[table.Labelled, table.Table]:
    """The texts and labels of a labelled file in the spec's format (errors name the field)."""
    tab = table.read_table(raw, spec.delimiter, field)
    columns = (spec.text_column, spec.label_column)
    label = spec.label_column if table.is_index(spec.label_column) else None
    tab = table.with_header(tab, spec.header, columns, label)
    if not tab.rows:
        raise SpecError(field, "the file has a header but no data rows")
    text_index = table.column_index(tab, spec.text_column, "text_column")
    label_index = table.column_index(tab, spec.label_column, "label_column")
    return table.labelled_rows(tab, text_index, label_index, "text_column", "label_column"), tab


class Splits(NamedTuple):
    rows: table.Labelled
    source: table.Table  # delimiter and header as read
    train: list[int]  # indices into rows
    val: list[int]


def labelled_splits(spec: ClassifySpec, files: dict[str, bytes]) -> Splits:
    """The rows of the input and its training / validation row indices, or SpecError."""
    rows, tab = read_labelled(spec, files["data"])
    if not rows.texts:
        raise SpecError("DATA", f"no row has text ({rows.skipped} empty)")
    distinct = set(rows.labels)
    if len(distinct) < 2:
        raise SpecError("label_column", f"labels with a single class ({next(iter(distinct))!r}): "
                        "a classifier needs at least 2 distinct labels")
    train, val = table.split_indices(rows.labels, spec.val_fraction, spec.seed)
    if len(train) < table.MIN_TRAIN_ROWS or len(val) < table.MIN_VAL_ROWS:
        raise SpecError("DATA", f"{len(rows.texts)} usable rows split into {len(train)} training and {len(val)} "
                        f"validation rows (val_fraction {spec.val_fraction:g}); need at least {table.MIN_TRAIN_ROWS} "
                        f"and {table.MIN_VAL_ROWS}")
    return Splits(rows, tab, train, val)


def check_inputs(spec: ClassifySpec, files: dict[str, bytes]) -> None:
    """Submit-time checks of the labelled file: UTF-8, the columns, no empty labels, at least
    two classes, enough rows for both splits. Rows with empty text are allowed (training
    skips them and reports how many)."""
    labelled_splits(spec, files)


# -- new files for predict and eval: read here, so that the worker and the submit-time check agree


def read_new_labelled(spec: ClassifySpec, fmt: dict[str, Any], raw: bytes) -> table.Labelled:
    """A labelled file for eval, in the training layout. Its delimiter comes from its content:
    the spec's may have come from the training file's name (reviews.csv), which says nothing
    about this file; where the content cannot tell (one column), as the training file was read
    (`fmt`, the training result's "format")."""
    delimiter = delimited.sniff_or(delimited.decode(raw, "DATA"), "DATA", str(fmt["delimiter"]))
    rows, _ = read_labelled(replace(spec, delimiter=delimiter), raw)
    return rows


def predict_texts(spec: ClassifySpec, fmt: dict[str, Any], raw: bytes, options: dict[str, Any]) -> tuple[list[str], int]:
    """The texts of a predict input and how many empty rows were skipped: options {"format":
    "lines"} (one text per line, blank lines skipped) or {"format": "csv"} (the training text
    column; "delimiter", "header", "text_column" override the training spec's)."""
    layout = options.get("format", "lines")
    if layout == "lines":
        return [line for line in delimited.split_lines(delimited.decode(raw, "inputs")) if line.strip()], 0
    if layout != "csv":
        raise SpecError("format", f"must be lines or csv, got {layout!r}")
    column = str(options.get("text_column", spec.text_column))
    header = options.get("header", spec.header)
    if header is None:  # as the training file was read
        header = True if not table.is_index(column) else bool(fmt["header"])
    text = delimited.decode(raw, "inputs")
    delimiter = options.get("delimiter") or delimited.sniff_or(text, "inputs", str(fmt["delimiter"]))
    tab = table.with_header(table.read_table(raw, delimiter, "inputs"), bool(header), (column,), None)
    index = table.column_index(tab, column, "text_column")
    texts = []
    for n, row in enumerate(tab.rows):
        if index >= len(row):
            raise SpecError("text_column", f"row {n + 1} has {len(row)} column(s), no column {index}")
        texts.append(row[index])
    kept = [t for t in texts if t.strip()]
    return kept, len(texts) - len(kept)


def check_inference_input(raw: bytes, model: TrainedModel, purpose: str, options: dict[str, Any]) -> None:
    """Submit-time check of predict's input or eval's data, read as the worker will read it
    (a model trained before results carried its file's format is checked by the worker)."""
    fmt = model.result.get("format")
    if fmt is None:
        return
    spec = ClassifySpec.from_dict(model.spec)
    if purpose == "eval":
        rows = read_new_labelled(spec, fmt, raw)
        if not rows.texts:
            raise SpecError("DATA", f"no row has text ({rows.skipped} empty)")
    else:
        texts, _ = predict_texts(spec, fmt, raw, options)
        if not texts:
            raise SpecError("inputs", "no text to classify (every line or row is empty)")
