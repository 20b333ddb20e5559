"""Speech recognition as a training task: train, predict and evaluate entry points for the worker.

train    bundle -> transcripts normalised -> seeded random validation sample -> alphabet of
         the training transcripts -> log-mel features (once) -> AcousticModel trained with
         CTC by rnn_tasks.loop.fit (SpecAugment on every training batch) -> CER and WER of
         the best checkpoint on the validation sample, greedy and with the spec's beam
predict  best checkpoint + a bundle of recordings -> transcripts (greedy, beam, or beam
         with a character LM fused in)
evaluate best checkpoint + a bundle with transcripts -> CER and WER (jiwer)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import torch
import torch.nn.functional as F

from rnn_tasks import checkpoint, loop
from rnn_tasks import device as devices
from rnn_tasks.loop import Callbacks
from rnn_tasks.spec import SpecError, TrainSpec
from rnn_tasks.tokenizer import CharTokenizer
from rnn_tasks.transcribe import audio, data, decode, features
from rnn_tasks.transcribe.model import AcousticConfig, AcousticModel
from rnn_tasks.transcribe.spec import TranscribeSpec, Utterance, check_transcripts, read_bundle, split_indices

EVAL_BATCH = 32  # utterances per inference batch (padding cannot change a result)
OPTIONS = TranscribeSpec.PREDICT_OPTIONS
LM_WEIGHT = 0.5  # shallow fusion defaults (benchmarks/quality.py --task transcribe)
LM_BONUS = 1.0


class TranscribeProblem(loop.Problem):
    model: AcousticModel

    def __init__(self, spec: TranscribeSpec, model: AcousticModel, train: data.Utterances, val: data.Utterances,
                 val_texts: list[str], alphabet: data.Alphabet, meta: dict[str, Any]) -> None:
        self.spec, self.model, self.train, self.val = spec, model, train, val
        self.val_texts, self.alphabet, self.meta = val_texts, alphabet, meta
        self.dev = next(model.parameters()).device
        self.train_lengths = train.lengths

    def batches_per_epoch(self) -> int:
        return sum(math.ceil(min(len(self.train) - lo, self.spec.batch_size * data.POOL) / self.spec.batch_size)
                   for lo in range(0, len(self.train), self.spec.batch_size * data.POOL))

    def epoch(self, generator: torch.Generator, start: int) -> Iterator[data.Batch]:
        for rows in data.bucketed(self.train_lengths, self.spec.batch_size, generator)[start:]:
            yield self.train.batch(rows, self.dev)

    def loss(self, batch: data.Batch) -> tuple[torch.Tensor, int]:
        s = self.spec
        x = features.spec_augment(batch.x, batch.lengths, s.freq_masks, s.freq_mask, s.time_masks, s.time_mask)
        return ctc_loss(self.model, batch._replace(x=x)), int(batch.lengths.sum())

    def evaluate(self) -> dict[str, float]:
        total, chars = 0.0, 0
        for rows in data.by_length(self.val.lengths, EVAL_BATCH):
            batch = self.val.batch(rows, self.dev)
            n = int(batch.target_lengths.sum())
            total += float(ctc_loss(self.model, batch)) * n
            chars += n
        hyps = transcribe(self.model, self.alphabet, self.val, beam=1)
        return {"val_loss": total / max(chars, 1), **error_rates(self.val_texts, hyps)}


def ctc_loss(model: AcousticModel, batch: data.Batch) -> torch.Tensor:
    """CTC loss per target character (nats), the batch's total over its total label length."""
    log_probs, out_len = model(batch.x, batch.lengths)
    loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, out_len, batch.target_lengths, blank=data.BLANK,
                      reduction="sum", zero_infinity=True)
    return loss / batch.target_lengths.sum().clamp(min=1).to(loss.device)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Character and word error rates over the whole set (edits / reference length), by jiwer."""
    if not references:
        return {"cer": math.nan, "wer": math.nan}
    refs, hyps = list(references), list(hypotheses)
    return {"cer": float(jiwer.cer(refs, hyps)), "wer": float(jiwer.wer(refs, hyps))}


@torch.no_grad()
def posteriors(model: AcousticModel, utts: data.Utterances) -> list[np.ndarray]:
    """Per-utterance log-probabilities (T', V) as float32 numpy, in utterance order."""
    dev = next(model.parameters()).device
    out: list[np.ndarray] = [np.zeros(0)] * len(utts)
    for rows in data.by_length(utts.lengths, EVAL_BATCH):
        log_probs, out_len = model(utts.batch(rows, dev).x, torch.tensor([len(utts.feats[r]) for r in rows]))
        cpu = log_probs.cpu().numpy()
        for i, r in enumerate(rows):
            out[r] = cpu[i, : int(out_len[i])]
    return out


def transcribe(model: AcousticModel, alphabet: data.Alphabet, utts: data.Utterances, beam: int,
               scorer: decode.CharLMScorer | None = None, weight: float = 0.0, bonus: float = 0.0) -> list[str]:
    """Transcripts of utterances: greedy at beam 1 without an LM, else prefix beam search."""
    texts = []
    for post in posteriors(model, utts):
        if beam == 1 and scorer is None:
            ids = decode.greedy(post)
        else:
            if scorer is not None:
                scorer.reset()
            ids = decode.prefix_beam(post, beam, scorer, weight, bonus)
        texts.append(alphabet.decode(ids))
    return texts


def featurize(utterances: Sequence[Utterance], audio_files: dict[str, bytes], n_mels: int,
              field: str = "DATA") -> list[torch.Tensor]:
    """Normalised log-mel features of each utterance; a recording listed twice is computed once."""
    done: dict[str, torch.Tensor] = {}
    for utt in utterances:
        if utt.member not in done:
            try:
                done[utt.member] = features.log_mel(audio.load(audio_files[utt.member]), n_mels)
            except audio.AudioError as exc:
                raise SpecError(field, f"{utt.name}: {exc}") from None
    return [done[u.member] for u in utterances]


def _labelled(alphabet: data.Alphabet, feats: list[torch.Tensor], texts: list[str]) -> data.Utterances:
    """Labels with characters outside the alphabet left out (validation only: CER still counts them)."""
    known = set(alphabet.chars)
    return data.Utterances(feats, [alphabet.encode("".join(c for c in t if c in known)) for t in texts])


def train(spec: TrainSpec, files: dict[str, bytes], callbacks: Callbacks | None = None,
          checkpoint_dir: Path | None = None, resume: Path | None = None) -> dict[str, Any]:
    if not isinstance(spec, TranscribeSpec):
        raise TypeError(f"transcribe.train needs a TranscribeSpec, got {type(spec).__name__}")
    if not isinstance(spec, TranscribeSpec):
        raise TypeError(f"transcribe.train needs a TranscribeSpec, got {type(spec).__name__}")
    dev = devices.resolve(spec.device)
    devices.configure(dev)
    torch.manual_seed(spec.seed)
    utterances, audio_files = read_bundle(files["data"])
    texts = check_transcripts(spec, utterances)
    train_idx, val_idx = split_indices(len(utterances), spec.val_fraction, spec.seed)
    if resume is not None:  # the resumed model's alphabet, whatever a refit would give
        alphabet = data.Alphabet(checkpoint.read(resume).meta["alphabet"])
    else:
        alphabet = data.Alphabet.fit([texts[i] for i in train_idx])
    feats = featurize(utterances, audio_files, spec.n_mels)
    train_set = _labelled(alphabet, [feats[i] for i in train_idx], [texts[i] for i in train_idx])
    val_texts = [texts[i] for i in val_idx]
    val_set = _labelled(alphabet, [feats[i] for i in val_idx], val_texts)
    config = AcousticConfig(n_mels=spec.n_mels, n_symbols=len(alphabet), arch=spec.arch, channels=spec.embed,
                            hidden=spec.hidden, layers=spec.layers, dropout=spec.dropout, subsample=spec.subsample)
    model = AcousticModel(config).to(dev)
    seconds = sum(len(f) for f in feats) * features.HOP / audio.RATE
    meta = {
        "model": config.to_dict(),
        "alphabet": alphabet.chars,
        "utterances": {"train": len(train_idx), "val": len(val_idx), "seconds": round(seconds, 1)},
    }
    problem = TranscribeProblem(spec, model, train_set, val_set, val_texts, alphabet, meta)
    summary = loop.fit(spec, problem, callbacks, checkpoint_dir, resume)
    best = checkpoint_dir / loop.BEST if checkpoint_dir is not None else None
    if best is not None and best.is_file():
        _, weights = loop.load(best, dev)
        model.load_state_dict(weights)
    model.eval()
    greedy = error_rates(val_texts, transcribe(model, alphabet, val_set, beam=1))
    beam = error_rates(val_texts, transcribe(model, alphabet, val_set, beam=spec.beam))
    return {**summary, **beam, "greedy_cer": greedy["cer"], "greedy_wer": greedy["wer"], "beam": spec.beam,
            "alphabet": alphabet.chars, "utterances": meta["utterances"]}


class _Loaded:
    """A trained acoustic model rebuilt from a checkpoint."""

    def __init__(self, checkpoint: Path, device: str) -> None:
        self.dev = devices.resolve(device)
        devices.configure(self.dev)
        ckpt, weights = loop.load(checkpoint, self.dev)
        if ckpt.task != TranscribeSpec.TASK:
            raise SpecError("JOB", f"{checkpoint.name} is a {ckpt.task!r} checkpoint, not a speech recogniser")
        self.spec = TranscribeSpec.from_dict(ckpt.spec)
        self.alphabet = data.Alphabet(ckpt.meta["alphabet"])
        self.model = AcousticModel(AcousticConfig(**ckpt.meta["model"])).to(self.dev)
        self.model.load_state_dict(weights)
        self.model.eval()

    def decoder(self, options: dict[str, Any]) -> tuple[int, decode.CharLMScorer | None, float, float]:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise SpecError(unknown[0], f"unknown option; transcription takes {', '.join(OPTIONS)}")
        beam = options.get("beam") or self.spec.beam
        lm = options.get("lm")
        scorer = None if lm is None else lm_scorer(Path(lm), self.alphabet, self.dev)
        weight = float(options.get("lm_weight", LM_WEIGHT)) if lm is not None else 0.0
        bonus = float(options.get("lm_bonus", LM_BONUS)) if lm is not None else 0.0
        return int(beam), scorer, weight, bonus

    def run(self, raw: bytes, options: dict[str, Any]) -> tuple[list[Utterance], list[str], dict[str, Any]]:
        beam, scorer, weight, bonus = self.decoder(options)
        utterances, audio_files = read_bundle(raw, "inputs")
        feats = featurize(utterances, audio_files, self.model.config.n_mels, "inputs")
        hyps = transcribe(self.model, self.alphabet, data.Utterances(feats, None), beam, scorer, weight, bonus)
        return utterances, hyps, {"beam": beam, "lm_weight": weight, "lm_bonus": bonus}


def lm_scorer(path: Path, alphabet: data.Alphabet, dev: torch.device) -> decode.CharLMScorer:
    """A finished character LM job's checkpoint as a shallow-fusion scorer over `alphabet`."""
    from rnn_tasks.lm.task import load_model  # only when an LM is fused

    model, tokenizer, _ = load_model(path, dev)
    if not isinstance(tokenizer, CharTokenizer):
        raise SpecError("lm", f"is a {tokenizer.kind} language model; fusion needs a character model")
    ids = {c: i for i, c in enumerate(tokenizer.chars)}
    missing = "".join(c for c in alphabet.chars if c not in ids)
    if missing:
        raise SpecError("lm", f"the language model never saw {missing!r}, which the recogniser writes")
    context = next((c for c in ("\n", " ") if c in ids), tokenizer.chars[0])
    return decode.CharLMScorer(model, [0] + [ids[c] for c in alphabet.chars], [ids[context]], dev)


def predict(checkpoint: Path, inputs: bytes, options: dict[str, Any], device: str = "auto") -> dict[str, Any]:
    """Transcribe a bundle of recordings; options: beam, lm (an LM checkpoint path), lm_weight, lm_bonus."""
    loaded = _Loaded(checkpoint, device)
    utterances, hyps, how = loaded.run(inputs, options)
    return {"transcripts": [{"audio": u.name, "text": h} for u, h in zip(utterances, hyps, strict=True)], **how}


def evaluate(checkpoint: Path, files: dict[str, bytes], device: str = "auto",
             options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """CER and WER on a bundle with transcripts (normalised as in training); options as predict's."""
    loaded = _Loaded(checkpoint, device)
    utterances, _ = read_bundle(files["data"], "data")
    refs = check_transcripts(loaded.spec, utterances, "data")
    for utt, ref in zip(utterances, refs, strict=True):
        unseen = loaded.alphabet.unknown(ref)
        if unseen:
            raise SpecError("data", f"{utt.name}: characters the model never saw in training: {unseen!r}")
    _, hyps, how = loaded.run(files["data"], dict(options or {}))
    return {**error_rates(refs, hyps), "n": len(refs), **how,
            "examples": [{"audio": u.name, "reference": r, "hypothesis": h}
                         for u, r, h in list(zip(utterances, refs, hyps, strict=True))[:5]]}
