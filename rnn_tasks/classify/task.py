"""The classify task: train, predict and evaluate entry points the worker calls.

train   labelled CSV/TSV -> seeded stratified split -> tokenizer fitted on the training
        split (or, with init_from, a language model's tokenizer, embedding and recurrent
        layers: rnn_tasks.finetune, rnn_tasks.classify.finetune) -> TextClassifier trained by
        rnn_tasks.loop.fit -> held-out figures of the
        best checkpoint (accuracy, macro F1, confusion matrix), beside those of TF-IDF +
        logistic regression fitted on the same training split (rnn_tasks.classify.baseline)
predict best checkpoint + texts (one per line, or a CSV column) -> label and probabilities
evaluate best checkpoint + a labelled file in the training format -> figures, and the
        baseline's on the same rows
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rnn_tasks import checkpoint, loop
from rnn_tasks import device as devices
from rnn_tasks.classify import baseline, finetune, metrics, table
from rnn_tasks.classify.data import PAD_ID, UNK_ID, Batch, Encoded, TextEncoder, class_weights, encode
from rnn_tasks.classify.model import Classifier, ClassifierConfig, build
from rnn_tasks.classify.spec import ClassifySpec, labelled_splits, predict_texts, read_new_labelled
from rnn_tasks.finetune import FineTunable, PretrainedLM, Schedule, pretrained
from rnn_tasks.loop import Callbacks
from rnn_tasks.spec import SpecError, TrainSpec

EVAL_BATCH = 256  # rows per batch when nothing is trained: bigger is faster, padding cannot change results
# predict's options: the request's format, and for direct callers the CSV layout (the training spec's by default)
PREDICT_OPTIONS = (*ClassifySpec.PREDICT_OPTIONS, "delimiter", "header", "text_column")


class ClassifyProblem(FineTunable):
    model: Classifier

    def __init__(self, spec: ClassifySpec, model: Classifier, train: Encoded, val: Encoded,
                 weights: torch.Tensor | None, meta: dict[str, Any]) -> None:
        self.spec, self.model, self.train, self.val, self.weights, self.meta = spec, model, train, val, weights, meta
        self.best_val = math.inf
        self.best_confusion: list[list[int]] = []  # at the lowest val_loss seen by this process
        if spec.init_from is not None:  # ULMFiT's layer groups (rnn_tasks.finetune)
            self.schedule = Schedule(finetune.layer_groups(model), spec.lr_decay, spec.unfreeze)

    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.spec.batch_size)

    def epoch(self, generator: torch.Generator, start: int) -> Iterator[Batch]:
        return self.train.shuffled(self.spec.batch_size, generator, start)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, int]:
        assert batch.labels is not None
        ids = batch.ids
        if self.spec.token_dropout > 0:  # padding stays padding; unpacked positions are never read anyway
            drop = torch.rand(ids.shape, device=ids.device) < self.spec.token_dropout
            ids = ids.masked_fill(drop & (ids != PAD_ID), UNK_ID)
        logits = self.model.member_logits(ids, batch.lengths).float()  # (members, B, classes)
        # Each member by its own loss (the mean over members), so that they stay independent.
        # Real tokens only: padding is never computed, so it does not count towards tokens/s.
        labels = batch.labels.repeat(len(logits))
        return F.cross_entropy(logits.flatten(0, 1), labels, weight=self.weights), int(batch.lengths.sum())

    def evaluate(self) -> dict[str, float]:
        logits = predict_logits(self.model, self.val)
        labels = self.val.labels
        assert labels is not None
        loss = weighted_loss(logits, labels.cpu(), self.weights)
        conf = metrics.confusion(labels.tolist(), logits.argmax(1).tolist(), self.model.config.n_classes)
        if loss < self.best_val:
            self.best_val, self.best_confusion = loss, conf
        return {"val_loss": loss, "accuracy": metrics.accuracy(conf), "macro_f1": metrics.macro_f1(conf)}


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> float:
    """Cross-entropy averaged with the training class weights, so val_loss and train loss compare."""
    w = None if weights is None else weights.cpu()
    return float(F.cross_entropy(logits, labels, weight=w))


@torch.no_grad()
def predict_logits(model: Classifier, rows: Encoded) -> torch.Tensor:
    """Logits (N, classes) on the CPU, in row order."""
    out = [model(b.ids, b.lengths).float().cpu() for b in rows.in_order(EVAL_BATCH)]
    return torch.cat(out) if out else torch.zeros(0, model.config.n_classes)


def train(spec: TrainSpec, files: dict[str, bytes], callbacks: Callbacks | None = None,
          checkpoint_dir: Path | None = None, resume: Path | None = None) -> dict[str, Any]:
    if not isinstance(spec, ClassifySpec):
        raise TypeError(f"classify.train needs a ClassifySpec, got {type(spec).__name__}")
    dev = devices.resolve(spec.device)
    devices.configure(dev)
    torch.manual_seed(spec.seed)
    rows, source, train_idx, val_idx = labelled_splits(spec, files)
    labels = table.sorted_labels(rows.labels)
    class_id = {label: i for i, label in enumerate(labels)}
    y = [class_id[x] for x in rows.labels]
    train_texts = [rows.texts[i] for i in train_idx]
    resumed = checkpoint.read(resume).meta if resume is not None else None
    lm = pretrained(spec.init_from, files) if resumed is None else None
    encoder = _encoder(spec, train_texts, resumed, lm)
    train_y = [y[i] for i in train_idx]
    train_rows = encode(encoder, train_texts, train_y, dev)
    val_rows = encode(encoder, [rows.texts[i] for i in val_idx], [y[i] for i in val_idx], dev)
    weights = class_weights(train_y, len(labels)) if spec.class_weights == "balanced" else None
    config = ClassifierConfig(vocab_size=len(encoder), n_classes=len(labels), arch=spec.arch, embed=spec.embed,
                              hidden=spec.hidden, layers=spec.layers, dropout=spec.dropout,
                              bidirectional=spec.bidirectional, pooling=spec.pooling, members=spec.ensemble)
    model = build(config)
    init = resumed.get("init_from") if resumed is not None else None  # what the first attempt took
    if lm is not None:
        init = {"job": spec.init_from, "copied": finetune.copy_weights(model, lm)}
    model = model.to(dev)
    tfidf_lr = baseline.fit(train_texts, train_y)
    meta = {
        "labels": labels,
        "model": config.to_dict(),
        "encoder": encoder.to_meta(),
        "class_weights": weights,
        "rows": {"train": len(train_idx), "val": len(val_idx), "skipped_empty": rows.skipped},
        "format": {"delimiter": source.delimiter, "header": source.header is not None},
        "baseline": tfidf_lr.to_meta() if tfidf_lr is not None else None,
        "init_from": init,  # the language model this classifier started from, and what it took
    }
    w = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=dev)
    problem = ClassifyProblem(spec, model, train_rows, val_rows, w, meta)
    summary = loop.fit(spec, problem, callbacks, checkpoint_dir, resume)
    confusion = _best_confusion(problem, checkpoint_dir, dev)
    val_texts, val_y = [rows.texts[i] for i in val_idx], [y[i] for i in val_idx]
    return {
        **summary,
        "accuracy": metrics.accuracy(confusion),
        "macro_f1": metrics.macro_f1(confusion),
        **_baseline_figures(tfidf_lr, val_texts, val_y, len(labels)),
        "confusion": confusion,
        "labels": labels,
        "class_weights": weights,
        "rows": meta["rows"],
        "format": meta["format"],  # how the training file was read: what predict and eval read new files by
        "init_from": init,
    }


def _encoder(spec: ClassifySpec, texts: list[str], resumed: dict[str, Any] | None,
             lm: PretrainedLM | None) -> TextEncoder:
    """The run's tokenizer: a resumed run's own (whatever a refit would give), the language
    model's it starts from, or one fitted on the training texts."""
    if resumed is not None:
        return TextEncoder.from_meta(resumed["encoder"])
    if lm is not None:
        return finetune.encoder(lm, spec)
    return TextEncoder.fit(spec.tokenizer, texts, lowercase=spec.lowercase, max_len=spec.max_len,
                           min_freq=spec.min_freq, max_vocab=spec.max_vocab, vocab_size=spec.vocab_size)


def _baseline_figures(fitted: baseline.Baseline | None, texts: list[str], y: list[int],
                      n_classes: int) -> dict[str, float | None]:
    """baseline_accuracy and baseline_macro_f1 of TF-IDF + LR on texts (None without a baseline)."""
    if fitted is None:
        return {"baseline_accuracy": None, "baseline_macro_f1": None}
    conf = metrics.confusion(y, fitted.predict(texts), n_classes)
    return {"baseline_accuracy": metrics.accuracy(conf), "baseline_macro_f1": metrics.macro_f1(conf)}


def _best_confusion(problem: ClassifyProblem, checkpoint_dir: Path | None, dev: torch.device) -> list[list[int]]:
    """The validation confusion matrix of the best checkpoint (the one fit's "metrics" describe).

    With a checkpoint directory it is recomputed from best.safetensors, which also covers a
    resumed run whose best came before the resume; without one, the best this run saw.
    """
    best = checkpoint_dir / loop.BEST if checkpoint_dir is not None else None
    if best is None or not best.is_file():
        return problem.best_confusion
    _, weights = loop.load(best, dev)
    problem.model.load_state_dict(weights)
    problem.model.eval()
    logits = predict_logits(problem.model, problem.val)
    assert problem.val.labels is not None
    return metrics.confusion(problem.val.labels.tolist(), logits.argmax(1).tolist(), problem.model.config.n_classes)


class _Loaded:
    """A checkpoint rebuilt for inference."""

    def __init__(self, checkpoint: Path, device: str) -> None:
        self.dev = devices.resolve(device)
        ckpt, weights = loop.load(checkpoint, self.dev)
        if ckpt.task != ClassifySpec.TASK:
            raise SpecError("checkpoint", f"is a {ckpt.task!r} model, not a classifier")
        self.spec = ClassifySpec.from_dict(ckpt.spec)
        self.meta = ckpt.meta
        self.labels: list[str] = list(ckpt.meta["labels"])
        self.encoder = TextEncoder.from_meta(ckpt.meta["encoder"])
        self.model = build(ClassifierConfig(**ckpt.meta["model"])).to(self.dev)
        self.model.load_state_dict(weights)
        self.model.eval()

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        rows = encode(self.encoder, texts, None, self.dev)
        return torch.softmax(predict_logits(self.model, rows), dim=1)


def predict(checkpoint: Path, inputs: bytes, options: dict[str, Any], device: str = "auto") -> dict[str, Any]:
    """Label texts: options {"format": "lines"} (one text per line, blank lines skipped) or
    {"format": "csv"} (the training text column; "delimiter", "header", "text_column" override
    the training spec's; without "delimiter" the file's content tells it, see _delimiter)."""
    for key in options:
        if key not in PREDICT_OPTIONS:
            raise SpecError(key, f"unknown predict option (known: {', '.join(PREDICT_OPTIONS)})")
    loaded = _Loaded(checkpoint, device)
    texts, skipped = predict_texts(loaded.spec, loaded.meta["format"], inputs, options)
    probs = loaded.probabilities(texts).tolist()
    out = []
    for text, p in zip(texts, probs, strict=True):
        best = max(range(len(p)), key=p.__getitem__)
        out.append({"text": text, "label": loaded.labels[best],
                    "probabilities": {label: round(q, 6) for label, q in zip(loaded.labels, p, strict=True)}})
    return {"predictions": out, "skipped_empty": skipped}


def evaluate(checkpoint: Path, files: dict[str, bytes], device: str = "auto",
             options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Figures on a labelled file in the training format. Labels the model never saw get
    rows of their own in the confusion matrix (always wrong) and are listed."""
    if options:
        raise SpecError(next(iter(options)), "unknown option; evaluating classification takes none")
    loaded = _Loaded(checkpoint, device)
    rows = read_new_labelled(loaded.spec, loaded.meta["format"], files["data"])
    unseen = sorted(set(rows.labels) - set(loaded.labels))
    labels = loaded.labels + unseen
    ids = {label: i for i, label in enumerate(labels)}
    truth = [ids[x] for x in rows.labels]
    predicted = loaded.probabilities(rows.texts).argmax(1).tolist()
    conf = metrics.confusion(truth, predicted, len(labels))
    fitted = loaded.meta.get("baseline")
    base = _baseline_figures(baseline.Baseline.from_meta(fitted) if fitted else None, rows.texts, truth, len(labels))
    return {"accuracy": metrics.accuracy(conf), "macro_f1": metrics.macro_f1(conf), **base, "confusion": conf,
            "labels": labels, "n": len(rows.texts), "skipped_empty": rows.skipped, "unseen_labels": unseen}
