"""Translation as a training task: train, predict and evaluate entry points for the worker.

The training split is the first pairs, validation the last `val_fraction` of them. The
tokenizers (one per language, or one for both with joint_vocab) are fitted on the
training split only and travel in the checkpoint's meta as JSON; with init_from the
source side's is a language model's, whose embedding and recurrent layers start the
encoder (rnn_tasks.translate.finetune). During
training each evaluation reports teacher-forced val_loss plus greedy BLEU/chrF on the
first 200 validation pairs (a fixed subset, so the curve is comparable); the final
summary decodes the whole validation split with the spec's beam from the best checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from rnn_tasks import checkpoint, loop
from rnn_tasks import device as devices
from rnn_tasks.finetune import FineTunable, PretrainedLM, Schedule, pretrained
from rnn_tasks.loop import Callbacks
from rnn_tasks.spec import SpecError, TrainSpec
from rnn_tasks.tokenizer import Tokenizer, fit_tokenizer, tokenizer_from_json
from rnn_tasks.translate import data, finetune
from rnn_tasks.translate.decode import translate
from rnn_tasks.translate.metrics import bleu_chrf, cross_entropy
from rnn_tasks.translate.model import Seq2Seq, Seq2SeqConfig, token_loss
from rnn_tasks.translate.spec import TranslateSpec, load_pairs, read_lines, read_pairs, split_sizes

BLEU_SUBSET = 200  # validation pairs decoded at every evaluation during training
OPTIONS = TranslateSpec.PREDICT_OPTIONS


class TranslateProblem(FineTunable):
    def __init__(self, spec: TranslateSpec, sources: list[str], targets: list[str], dev: torch.device,
                 meta: dict[str, Any] | None = None, lm: PretrainedLM | None = None) -> None:
        """meta: a resumed run's checkpoint meta; lm: the language model a fresh run's encoder starts from."""
        self.spec, self.dev = spec, dev
        n_train, _ = split_sizes(len(sources), spec.val_fraction)
        if meta is None:  # a resumed run reuses its tokenizers: refitting could change the ids
            if spec.joint_vocab:
                self.tgt_tok = self.src_tok = _fit(spec, sources[:n_train] + targets[:n_train])
            else:
                self.tgt_tok = _fit(spec, targets[:n_train])
                self.src_tok = (finetune.source_tokenizer(lm, self.tgt_tok) if lm is not None
                                else _fit(spec, sources[:n_train]))
        else:
            self.src_tok = tokenizer_from_json(meta["source_tokenizer"])
            self.tgt_tok = tokenizer_from_json(meta["target_tokenizer"])
        self.pad, self.bos, self.eos = data.special_ids(self.tgt_tok)
        pairs = data.encode_pairs(self.src_tok, self.tgt_tok, sources[:n_train], targets[:n_train])
        self.train_pairs, dropped = data.drop_long(pairs, spec.max_len)
        if not self.train_pairs:
            raise SpecError("max_len", f"all {len(pairs)} training pairs have a side longer than {spec.max_len} "
                                       "tokens; raise max_len")
        self.val_sources, self.val_targets = sources[n_train:], targets[n_train:]
        self.val_pairs = data.encode_pairs(self.src_tok, self.tgt_tok, self.val_sources, self.val_targets)
        config = Seq2SeqConfig(
            src_vocab=len(self.src_tok), tgt_vocab=len(self.tgt_tok), arch=spec.arch, embed=spec.embed,
            hidden=spec.hidden, layers=spec.layers, dropout=spec.dropout, bidirectional=spec.bidirectional,
            attention=spec.attention, pad_id=self.pad, tie_output=spec.tie_embeddings, shared_vocab=spec.joint_vocab,
        ) if meta is None else Seq2SeqConfig(**meta["model"])  # a resumed run keeps its model, whatever defaults say now
        model = Seq2Seq(config)
        init = meta.get("init_from") if meta is not None else None  # what the first attempt took
        if lm is not None:
            init = {"job": spec.init_from, "copied": finetune.copy_encoder(model, lm)}
        self.model: Seq2Seq = model.to(dev)
        if spec.init_from is not None:  # ULMFiT's layer groups (rnn_tasks.translate.finetune)
            self.schedule = Schedule(finetune.layer_groups(self.model), spec.lr_decay, spec.unfreeze)
        self.meta = {
            "model": config.to_dict(),
            "source_tokenizer": self.src_tok.to_json(),
            "target_tokenizer": self.tgt_tok.to_json(),
            "train_pairs": len(self.train_pairs),
            "dropped_long": dropped,
            "val_pairs": len(self.val_pairs),
            "init_from": init,  # the language model the encoder started from, and what it took
        }

    def tied(self) -> dict[str, str]:
        return self.model.tied()

    def batches_per_epoch(self) -> int:
        return data.batches_per_epoch(len(self.train_pairs), self.spec.batch_size)

    def epoch(self, generator: torch.Generator, start: int) -> Iterator[data.Batch]:
        order = data.batch_order(self.train_pairs, self.spec.batch_size, generator)
        for indices in order[start:]:
            yield data.make_batch([self.train_pairs[i] for i in indices], self.pad, self.bos, self.eos, self.dev)

    def loss(self, batch: data.Batch) -> tuple[torch.Tensor, int]:
        if self.spec.teacher_forcing >= 1.0:
            logits = self.model(batch.src, batch.lengths, batch.tgt_in)
        else:
            logits = self.model.forward_mixed(batch.src, batch.lengths, batch.tgt_in, self.spec.teacher_forcing)
        return token_loss(logits, batch.tgt_out, self.pad, self.spec.label_smoothing), batch.tokens

    def evaluate(self) -> dict[str, float]:
        figures = {"val_loss": cross_entropy(self.model, self.val_pairs, self.pad, self.bos, self.eos)}
        figures.update(self.quality(self.val_sources[:BLEU_SUBSET], self.val_targets[:BLEU_SUBSET], beam=1))
        return figures

    def quality(self, sources: list[str], references: list[str], beam: int) -> dict[str, float]:
        hypotheses = translate(self.model, self.src_tok, self.tgt_tok, sources, beam=beam,
                               cap=2 * self.spec.max_len)
        return bleu_chrf(hypotheses, references)


def _fit(spec: TranslateSpec, texts: list[str]) -> Tokenizer:
    return fit_tokenizer(spec.tokenizer, texts, min_freq=spec.min_freq, max_vocab=spec.max_vocab,
                         vocab_size=spec.vocab_size)


def train(spec: TrainSpec, files: dict[str, bytes], callbacks: Callbacks | None, checkpoint_dir: Path | None,
          resume: Path | None) -> dict[str, Any]:
    """Train until a stop condition; the summary adds BLEU/chrF of the best model on the validation split."""
    if not isinstance(spec, TranslateSpec):
        raise TypeError(f"translate.train needs a TranslateSpec, got {type(spec).__name__}")
    sources, targets = load_pairs(spec, files)
    dev = devices.resolve(spec.device)
    devices.configure(dev)
    torch.manual_seed(spec.seed)
    meta = checkpoint.read(resume).meta if resume is not None else None
    lm = pretrained(spec.init_from, files) if meta is None else None  # a resumed run has its own weights
    problem = TranslateProblem(spec, sources, targets, dev, meta, lm)
    summary = loop.fit(spec, problem, callbacks, checkpoint_dir, resume)
    best = checkpoint_dir / loop.BEST if checkpoint_dir is not None else None
    if best is not None and best.exists():
        _, weights = loop.load(best, dev)
        problem.model.load_state_dict(weights)
    with torch.no_grad():
        final = problem.quality(problem.val_sources, problem.val_targets, beam=spec.beam)
    return {**summary, **final, "beam": spec.beam, "val_pairs": len(problem.val_pairs),
            "train_pairs": len(problem.train_pairs), "dropped_long": problem.meta["dropped_long"],
            "init_from": problem.meta["init_from"]}


class _Loaded:
    """A trained translator rebuilt from a checkpoint."""

    def __init__(self, checkpoint: Path, device: str) -> None:
        dev = devices.resolve(device)
        devices.configure(dev)
        ckpt, weights = loop.load(checkpoint, dev)
        if ckpt.task != TranslateSpec.TASK:
            raise ValueError(f"{checkpoint.name} is a {ckpt.task!r} checkpoint, not a translation model")
        self.spec = TranslateSpec.from_dict(ckpt.spec)
        self.src_tok = tokenizer_from_json(ckpt.meta["source_tokenizer"])
        self.tgt_tok = tokenizer_from_json(ckpt.meta["target_tokenizer"])
        self.model = Seq2Seq(Seq2SeqConfig(**ckpt.meta["model"])).to(dev)
        self.model.load_state_dict(weights)
        self.model.eval()

    def translate(self, sentences: list[str], beam: int, cap: int) -> list[str]:
        return translate(self.model, self.src_tok, self.tgt_tok, sentences, beam=beam, cap=cap)


def _int_option(options: dict[str, Any], name: str, default: int, hi: int) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= hi:
        raise SpecError(name, f"must be an integer in [1, {hi}], got {value!r}")
    return value


def predict(checkpoint: Path, inputs: bytes, options: dict[str, Any], device: str) -> dict[str, Any]:
    """Translate source sentences, one per line (UTF-8 or gzip); options: beam, max_len (output tokens)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise SpecError(unknown[0], f"unknown option; translation takes {', '.join(OPTIONS)}")
    loaded = _Loaded(checkpoint, device)
    beam = _int_option(options, "beam", loaded.spec.beam, 64)
    cap = _int_option(options, "max_len", 2 * loaded.spec.max_len, 10_000)
    sentences = read_lines(inputs, "inputs")
    return {"translations": loaded.translate(sentences, beam, cap), "beam": beam}


def evaluate(checkpoint: Path, files: dict[str, bytes], device: str = "auto",
             options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """BLEU and chrF of the checkpoint's translations of new parallel text; options: beam (the spec's by default)."""
    beam = (options or {}).get("beam")
    sources, references = read_pairs(files)
    loaded = _Loaded(checkpoint, device)
    beam = beam or loaded.spec.beam
    hypotheses = loaded.translate(sources, beam, 2 * loaded.spec.max_len)
    return {**bleu_chrf(hypotheses, references), "n": len(sources), "beam": beam}
