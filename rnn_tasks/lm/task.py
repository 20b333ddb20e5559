"""The language-model task: train, evaluate and generate entry points the worker calls.

train     UTF-8 text -> tokenizer (char | word | bpe) fitted on the training part ->
          LanguageModel trained by rnn_tasks.loop.fit on contiguous streams (the hidden
          state is carried from one window to the next, see LMProblem) -> held-out
          loss, perplexity and bits per character of the best checkpoint
evaluate  best checkpoint + a text -> the same figures on that text
generate  best checkpoint + prompts -> continuations (rnn_tasks.lm.sampling)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rnn_tasks import checkpoint, loop
from rnn_tasks import device as devices
from rnn_tasks.errors import InputError
from rnn_tasks.lm import corpus, data, metrics
from rnn_tasks.lm.model import LanguageModel, LMConfig, State, detach
from rnn_tasks.lm.sampling import SampleOptions
from rnn_tasks.lm.sampling import generate as sample
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.loop import Callbacks
from rnn_tasks.spec import GenerateSpec, SpecError, TrainSpec
from rnn_tasks.text import split_point
from rnn_tasks.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_json

__all__ = ["LMProblem", "evaluate", "generate", "load_model", "predict", "prepare_corpus", "train"]

Window = tuple[torch.Tensor, torch.Tensor]


class LMProblem(loop.Problem):
    """Truncated BPTT over side-by-side streams (rnn_tasks.lm.data):

        window:   0      1      2     ...   (an epoch; the next starts from zeros again)
        state:  0 -> s0 -> s1 -> s2 ...     carried forward, cut from the graph (detached)

    The state starts from zeros at every epoch and after a resume, and is carried,
    detached, from one window to the next. Per step this is the work the LM always did:
    one forward over (batch, seq_len), no host sync.
    """

    model: LanguageModel

    def __init__(self, spec: LMSpec, model: LanguageModel, streams: data.Streams, val_ids: torch.Tensor,
                 meta: dict[str, Any]) -> None:
        self.spec, self.model, self.streams, self.val_ids, self.meta = spec, model, streams, val_ids, meta
        self.state: State | None = None

    def batches_per_epoch(self) -> int:
        return self.streams.windows_per_epoch()

    def epoch(self, generator: torch.Generator, start: int) -> Iterator[Window]:
        self.state = None
        return self.streams.epoch(generator, start=start)

    def loss(self, batch: Window) -> tuple[torch.Tensor, int]:
        x, y = batch
        logits, state = self.model(x, self.state)
        self.state = detach(state)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1)), x.numel()

    def evaluate(self) -> dict[str, float]:
        total, count = metrics.score(self.model, self.val_ids, self.spec.amp)
        return {"val_loss": total / count}

    def tied(self) -> dict[str, str]:
        return {"head.weight": "embed.weight"} if self.model.config.tie_weights else {}


def train(spec: TrainSpec, files: dict[str, bytes], callbacks: Callbacks | None = None,
          checkpoint_dir: Path | None = None, resume: Path | None = None) -> dict[str, Any]:
    """Train an LM on files["data"] (UTF-8 text) until a stop condition; see the module docstring.

    With `resume` (a LAST checkpoint) the tokenizer, step, optimizer, RNG and data position
    continue from it; the recurrent state restarts from zeros.
    """
    if not isinstance(spec, LMSpec):
        raise TypeError(f"lm.train needs an LMSpec, got {type(spec).__name__}")
    text = _decode(files["data"], "data")
    dev = devices.resolve(spec.device)
    devices.configure(dev)
    torch.manual_seed(spec.seed)
    known = _tokenizer(checkpoint.read(resume).meta) if resume is not None else None
    tokenizer, train_ids, val_ids, val_chars = prepare_corpus(spec, text, known)
    if len(val_ids) < 2:
        raise data.CorpusTooShortError(
            f"the held-out {spec.val_fraction:g} of the corpus has {len(val_ids)} {spec.tokenizer} tokens; "
            "it needs at least 2 (use a longer corpus or a larger val_fraction)", "val_fraction")
    streams = data.Streams(train_ids.to(dev), spec.batch_size, spec.seq_len)
    config = LMConfig(vocab_size=len(tokenizer), arch=spec.arch, embed=spec.embed, hidden=spec.hidden,
                      layers=spec.layers, dropout=spec.dropout, tie_weights=spec.tie_weights)
    model = LanguageModel(config).to(dev)
    meta = {"model": config.to_dict(), "tokenizer": tokenizer.to_json()}
    problem = LMProblem(spec, model, streams, val_ids.to(dev), meta)
    summary = loop.fit(spec, problem, callbacks, checkpoint_dir, resume)
    best = float(summary["best_val_loss"])
    summary.update(
        perplexity=metrics.perplexity(best),  # per token: comparable only within one tokenizer
        bpc=metrics.bits_per_char(best, len(val_ids), val_chars),  # comparable across tokenizers
        tokenizer=tokenizer.kind, vocab_size=len(tokenizer))
    if isinstance(tokenizer, CharTokenizer):
        summary["vocab"] = tokenizer.chars  # what generate's prompt check reads at submit time
    return summary


def prepare_corpus(spec: LMSpec, text: str, tokenizer: Tokenizer | None = None
                   ) -> tuple[Tokenizer, torch.Tensor, torch.Tensor, int]:
    """The tokenizer (fitted unless given), training ids, held-out ids and held-out characters.

    Ids are compact (uint8/int16/int32) and encoded a chunk at a time, so this peaks at
    about 2-3 bytes per corpus byte with the text itself (rnn_tasks.lm.corpus;
    benchmarks/corpus_memory.py measures it).
    """
    if tokenizer is None:
        tokenizer = _fit(spec, text)
    train_ids, val_ids, val_chars = corpus.split(tokenizer, text, spec.val_fraction)
    return tokenizer, train_ids, val_ids, val_chars


def _fit(spec: LMSpec, text: str) -> Tokenizer:
    """The tokenizer of a new run, fitted on the training part only (held-out words the
    training part lacks become <unk>, as they would for new text). A char vocabulary is
    taken from the whole text: CharTokenizer has no <unk> to fall back on."""
    if spec.tokenizer == "char":
        return corpus.fit("char", text, len(text))
    return corpus.fit(spec.tokenizer, text, split_point(text, spec.val_fraction, whole_words=True),
                      min_freq=spec.min_freq, max_vocab=spec.max_vocab, vocab_size=spec.vocab_size,
                      lowercase=spec.lowercase)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[LanguageModel, Tokenizer, dict[str, Any]]:
    """The trained model (eval mode, on `device`), its tokenizer and its spec, from any LM checkpoint."""
    ckpt, weights = loop.load(path, device)
    if ckpt.task != LMSpec.TASK:
        raise SpecError("source", f"{path.name} is a {ckpt.task!r} checkpoint, not a language model")
    model = LanguageModel(LMConfig(**ckpt.meta["model"]))
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise checkpoint.CheckpointError(f"{path.name}: weights do not match the stored model config: {exc}",
                                         "checkpoint") from None
    return model.to(device).eval(), _tokenizer(ckpt.meta), ckpt.spec


def evaluate(checkpoint_path: Path, files: dict[str, bytes], device: str = "auto",
             options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Figures of a trained LM on the whole of files["data"] (UTF-8 text).

    Character models refuse text with characters they never saw (UnknownCharacterError);
    word models read unseen words as <unk>; BPE models read any text.
    """
    if options:
        raise SpecError(next(iter(options)), "unknown option; evaluating a language model takes none")
    text = _decode(files["data"], "data")
    dev = devices.resolve(device)
    devices.configure(dev)
    model, tokenizer, spec = load_model(checkpoint_path, dev)
    ids = corpus.encode(tokenizer, text).to(dev)  # compact ids, a chunk at a time
    total, count = metrics.score(model, ids, amp=bool(spec.get("amp", True)))
    loss = total / count
    figures: dict[str, Any] = {
        "loss": loss,
        "perplexity": metrics.perplexity(loss),
        "bpc": metrics.bits_per_char(loss, len(ids), len(text)),
        "tokens": count,
        "characters": len(text),
        "tokenizer": tokenizer.kind,
        "vocab_size": len(tokenizer),
        "device": str(dev),
    }
    if tokenizer.unk_id is not None:
        # How much of the text the model saw only as <unk>: a perplexity is only as good as this is low.
        figures["unk_rate"] = float((ids == tokenizer.unk_id).float().mean())
    return figures


def generate(checkpoint_path: Path, spec: GenerateSpec, should_stop: Callable[[], bool] = lambda: False
             ) -> dict[str, Any]:
    """Continue spec.prompts; "partial" when should_stop ended the texts early."""
    dev = devices.resolve(spec.device)
    devices.configure(dev)
    model, tokenizer, _ = load_model(checkpoint_path, dev)
    opts = SampleOptions(max_tokens=spec.max_tokens, temperature=spec.temperature, top_k=spec.top_k,
                         top_p=spec.top_p, greedy=spec.greedy, seed=spec.seed)
    stopped = False

    def stop() -> bool:
        nonlocal stopped
        stopped = stopped or should_stop()
        return stopped

    start = time.perf_counter()
    texts = sample(model, tokenizer, list(spec.prompts), opts, should_stop=stop)
    elapsed = time.perf_counter() - start
    per_text = len(texts[0]) if stopped and texts and tokenizer.kind == "char" else spec.max_tokens
    tokens = len(texts) * per_text
    return {"texts": texts, "prompts": list(spec.prompts), "tokens": tokens,
            "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1), "device": str(dev), "partial": stopped}


def predict(checkpoint_path: Path, inputs: bytes, options: dict[str, Any], device: str = "auto") -> dict[str, Any]:
    """A language model continues prompts (generate); it has no predict."""
    raise InputError("a language model generates text: submit a generate job for it", "source")


def _tokenizer(meta: dict[str, Any]) -> Tokenizer:
    return tokenizer_from_json(meta["tokenizer"])


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"is not UTF-8 text ({exc.reason} at byte {exc.start})", name) from None
