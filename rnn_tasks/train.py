"""The training loop for language models over characters, words or BPE tokens.

It reports through callbacks and writes checkpoints to a directory it is given; it
knows nothing of queues. The caller (a Celery task, a benchmark, a test) decides what
progress reports and stop requests mean.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rnn_tasks import checkpoint, corpus, data, lm_task
from rnn_tasks import device as devices
from rnn_tasks.models import CharLM, ModelConfig, State, count_parameters, detach
from rnn_tasks.spec import TrainSpec
from rnn_tasks.text import split_point
from rnn_tasks.tokenizer import Tokenizer

BEST = "best.safetensors"  # lowest validation loss: what generation samples from
LAST = "last.safetensors"  # latest state with optimizer and RNG: what resume reads
REPORT_SECONDS = 0.5  # on_step is called at most this often (and at every evaluation)


class NumericalError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class StepMetrics:
    """One progress report. val_loss is set only on reports that follow an evaluation."""

    step: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float
    tokens_per_s: float
    progress: float  # 0..1 towards the nearest stop condition
    elapsed: float  # training seconds so far
    total_steps: int | None  # when known from max_steps/epochs
    val_loss: float | None = None
    device: str = "cpu"
    tokens: int = 0  # trained since this call of train() began (a resume starts again at 0)
    memory_allocated: int | None = None  # CUDA only: bytes held by tensors, and reserved by
    memory_reserved: int | None = None  # torch's caching allocator, on the run's device
    figures: dict[str, float] | None = None  # a task's other held-out figures at this evaluation (accuracy, bleu, rmse...)


@dataclass
class Callbacks:
    on_step: Callable[[StepMetrics], None] = lambda metrics: None
    should_stop: Callable[[], bool] = lambda: False
    # Called after each checkpoint file is written (name, path, step): the caller
    # publishes it (the worker uploads it and points the job at it, fenced). An
    # exception raised here stops training.
    on_checkpoint: Callable[[str, Path, int], None] = lambda name, path, step: None


@dataclass
class TrainResult:
    steps: int
    epochs: float
    tokens: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    tokens_per_s: float
    elapsed: float
    stopped_by: str  # max_steps | epochs | time_budget | early_stop | requested
    parameters: int
    vocab_size: int
    device: str
    checkpoint: Path | None = None
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, val_loss)
    tokenizer: str = "char"  # char | word | bpe
    perplexity: float = math.nan  # exp(best_val_loss): per token, so only comparable within one tokenizer
    bpc: float = math.nan  # bits per character of the held-out text at best_val_loss: comparable across tokenizers

    def summary(self) -> dict[str, Any]:
        """The JSON-able figures a job reports when it finishes."""
        return {
            "steps": self.steps,
            "epochs": round(self.epochs, 4),
            "tokens": self.tokens,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "best_val_loss": self.best_val_loss,
            "perplexity": self.perplexity,
            "bpc": self.bpc,
            "tokenizer": self.tokenizer,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "elapsed_s": round(self.elapsed, 2),
            "stopped_by": self.stopped_by,
            "parameters": self.parameters,
            "vocab_size": self.vocab_size,
            "device": self.device,
        }


def lr_at(spec: TrainSpec, step: int, progress: float) -> float:
    """Linear warmup over warmup_steps, then cosine from lr to min_lr_ratio * lr.

    The cosine runs over `progress` (0..1 towards the nearest stop condition), so the
    same schedule serves step, epoch and wall-clock budgets.
    """
    warm = min(1.0, (step + 1) / spec.warmup_steps) if spec.warmup_steps else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return spec.lr * warm * (spec.min_lr_ratio + (1.0 - spec.min_lr_ratio) * cosine)


class _Run:
    """State of one training run; train() below is its only user."""

    def __init__(self, spec: TrainSpec, text: str, checkpoint_dir: Path | None, resume: Path | None) -> None:
        self.on_checkpoint: Callable[[str, Path, int], None] = Callbacks.on_checkpoint
        self.spec = spec
        self.dev = devices.resolve(spec.device)
        devices.configure(self.dev)
        torch.manual_seed(spec.seed)
        self.checkpoint_dir = checkpoint_dir
        meta = checkpoint.read_meta(resume) if resume else None
        self.tokenizer, train_ids, val_ids, self.val_chars = prepare_corpus(spec, text, meta.tokenizer() if meta else None)
        self.val_ids = val_ids.to(self.dev)
        if len(self.val_ids) < 2:
            raise data.CorpusTooShortError(
                f"the held-out {spec.val_fraction:g} of the corpus has {len(self.val_ids)} {spec.tokenizer} tokens; "
                "it needs at least 2 (use a longer corpus or a larger --val-fraction)"
            )
        self.streams = data.Streams(train_ids.to(self.dev), spec.batch_size, spec.seq_len)
        config = ModelConfig(
            vocab_size=len(self.tokenizer),
            arch=spec.arch,
            embed=spec.embed,
            hidden=spec.hidden,
            layers=spec.layers,
            dropout=spec.dropout,
            tie_weights=spec.tie_weights,
        )
        self.model = CharLM(config).to(self.dev)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, spec.weight_decay), lr=spec.lr)
        self.generator = torch.Generator().manual_seed(spec.seed)
        self.epoch_rng = self.generator.get_state()
        self.step = 0
        self.epoch = 0
        self.window = 0
        self.elapsed = 0.0
        self.best_val = math.inf
        self.stale_evals = 0
        self.last_loss = math.nan  # training loss at the resume checkpoint, if any
        if resume:
            self._restore(resume)

    def _restore(self, path: Path) -> None:
        meta, model = checkpoint.load_model(path, self.dev)
        torch.manual_seed(self.spec.seed + meta.step)  # fresh dropout noise after resume
        self.model.load_state_dict(model.state_dict())
        optim_state, rng = checkpoint.load_training_state(path)
        if optim_state is not None:
            self.optimizer.load_state_dict(optim_state)
        if rng is not None:
            self.generator.set_state(rng)
        self.step = meta.step
        if meta.train_loss is not None:
            self.last_loss = meta.train_loss
        self.epoch = int(meta.position.get("epoch", 0))
        self.window = int(meta.position.get("window", 0))
        self.elapsed = float(meta.position.get("elapsed", 0.0))
        self.best_val = meta.best_val_loss if meta.best_val_loss is not None else math.inf
        self.stale_evals = int(meta.position.get("stale_evals", 0))

    @property
    def steps_per_epoch(self) -> int:
        return self.streams.windows_per_epoch()

    def total_steps(self) -> int | None:
        candidates = []
        if self.spec.max_steps is not None:
            candidates.append(self.spec.max_steps)
        if self.spec.epochs is not None:
            candidates.append(max(1, math.ceil(self.spec.epochs * self.steps_per_epoch)))
        if not candidates and self.spec.time_budget is None:
            candidates.append(self.steps_per_epoch)  # no stop condition given: one epoch
        return min(candidates) if candidates else None

    def progress(self) -> float:
        parts = []
        total = self.total_steps()
        if total is not None:
            parts.append(self.step / total)
        if self.spec.time_budget is not None:
            parts.append(self.elapsed / self.spec.time_budget)
        return min(1.0, max(parts))

    def stop_reason(self) -> str | None:
        if self.spec.time_budget is not None and self.elapsed >= self.spec.time_budget:
            return "time_budget"
        total = self.total_steps()
        if total is not None and self.step >= total:
            by_steps = self.spec.max_steps is not None and self.step >= self.spec.max_steps
            return "max_steps" if by_steps else "epochs"
        return None

    def train_window(self, x: torch.Tensor, y: torch.Tensor, state: State | None) -> tuple[torch.Tensor, torch.Tensor, State]:
        spec = self.spec
        lr = lr_at(spec, self.step, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with devices.autocast(self.dev, spec.amp):
            logits, state = self.model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        total = loss + spec.l1 * sum(p.abs().sum() for p in self.model.parameters() if p.dim() > 1) if spec.l1 else loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), spec.clip if spec.clip else math.inf)
        self.optimizer.step()
        self.step += 1
        return loss.detach(), grad_norm.detach(), detach(state)

    def evaluate(self) -> float:
        self.model.eval()
        total, count = lm_task.score(self.model, self.val_ids, self.spec.amp)
        self.model.train()
        return total / count

    def save(self, name: str, val_loss: float | None, train_loss: float | None, with_state: bool) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        meta = checkpoint.Checkpoint.for_tokenizer(
            self.tokenizer,
            spec=self.spec.to_dict(),
            model=self.model.config,
            step=self.step,
            best_val_loss=None if math.isinf(self.best_val) else self.best_val,
            val_loss=val_loss,
            train_loss=train_loss,
            position={"epoch": self.epoch, "window": self.window, "elapsed": self.elapsed, "stale_evals": self.stale_evals},
        )
        path = self.checkpoint_dir / name
        if with_state:
            checkpoint.save(path, meta, self.model, self.optimizer, self.epoch_rng)
        else:
            checkpoint.save(path, meta, self.model)
        self.on_checkpoint(name, path, self.step)
        return path


def split_text(text: str, val_fraction: float, whole_words: bool = False) -> tuple[str, str]:
    """The training text and the held-out last val_fraction of it (data.split on characters).

    With whole_words the cut moves back to the nearest space or newline, so no word is
    cut in two (which would invent two tokens that the text does not have).
    """
    cut = split_point(text, val_fraction, whole_words)
    return text[:cut], text[cut:]


def prepare_corpus(
    spec: TrainSpec, text: str, tokenizer: Tokenizer | None = None
) -> tuple[Tokenizer, torch.Tensor, torch.Tensor, int]:
    """The tokenizer (fitted unless given), training ids, held-out ids and held-out characters.

    Ids are compact (uint8/int16/int32) and encoded a chunk at a time, so this peaks at
    about 2-3 bytes per corpus byte with the text itself (rnn_tasks.corpus;
    benchmarks/corpus_memory.py measures it).
    """
    if tokenizer is None:
        tokenizer = _fit(spec, text)
    train_ids, val_ids, val_chars = corpus.split(tokenizer, text, spec.val_fraction)
    return tokenizer, train_ids, val_ids, val_chars


def _fit(spec: TrainSpec, text: str) -> Tokenizer:
    """The tokenizer of a new run, fitted on the training part only (held-out words the
    training part lacks become <unk>, as they would for new text). A char vocabulary is
    taken from the whole text as before: CharTokenizer has no <unk> to fall back on."""
    if spec.tokenizer == "char":
        return corpus.fit("char", text, len(text))
    return corpus.fit(
        spec.tokenizer,
        text,
        split_point(text, spec.val_fraction, whole_words=True),
        min_freq=spec.min_freq,
        max_vocab=spec.max_vocab,
        vocab_size=spec.vocab_size,
    )


def _param_groups(model: CharLM, weight_decay: float) -> list[dict[str, object]]:
    """Weight decay (L2) on weight matrices only, not on biases."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class _Reporter:
    """Accumulates losses between reports and calls on_step with a StepMetrics.

    Losses stay on the device between reports, so a CUDA run syncs with the host once
    per report, not once per step; the NaN check rides on that same sync.
    """

    def __init__(self, run: _Run, on_step: Callable[[StepMetrics], None]) -> None:
        self.run = run
        self.on_step = on_step
        self.loss_sum = torch.zeros((), device=run.dev)
        self.count = 0
        self.last_loss = run.last_loss  # a resumed run that stops at once reports its checkpoint's loss
        self.grad_norm = torch.zeros((), device=run.dev)
        self.tokens = 0  # trained in this call of train()
        self.resumed_at = run.elapsed
        self.last_time = time.perf_counter()
        self.mark = (0, run.elapsed)  # tokens and elapsed at the previous report

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor, tokens: int) -> None:
        self.loss_sum += loss
        self.grad_norm = grad_norm
        self.count += 1
        self.tokens += tokens

    def due(self) -> bool:
        return time.perf_counter() - self.last_time >= REPORT_SECONDS

    def average_rate(self) -> float:
        return self.tokens / max(self.run.elapsed - self.resumed_at, 1e-9)

    def emit(self, val_loss: float | None = None) -> None:
        run = self.run
        if self.count:
            self.last_loss = float(self.loss_sum) / self.count
            if not math.isfinite(self.last_loss):
                raise NumericalError(
                    f"training loss became {self.last_loss} by step {run.step}: lower the learning rate (--lr) "
                    "or clip gradients (--clip)"
                )
        tokens, elapsed = self.mark
        dt = run.elapsed - elapsed
        rate = (self.tokens - tokens) / dt if dt > 0 else self.average_rate()
        self.on_step(
            StepMetrics(
                step=run.step,
                epoch=run.epoch + run.window / run.steps_per_epoch,
                loss=self.last_loss,
                lr=run.optimizer.param_groups[0]["lr"],
                grad_norm=float(self.grad_norm),
                tokens_per_s=rate,
                progress=run.progress(),
                elapsed=run.elapsed,
                total_steps=run.total_steps(),
                val_loss=val_loss,
                device=str(run.dev),
                tokens=self.tokens,
                **_memory(run.dev),
            )
        )
        self.loss_sum = torch.zeros((), device=run.dev)
        self.count = 0
        self.last_time = time.perf_counter()
        self.mark = (self.tokens, run.elapsed)


def _memory(dev: torch.device) -> dict[str, Any]:  # StepMetrics' memory_* fields
    if dev.type != "cuda":
        return {}
    return {"memory_allocated": torch.cuda.memory_allocated(dev), "memory_reserved": torch.cuda.memory_reserved(dev)}


def _validate_and_save(run: _Run, reporter: _Reporter, history: list[tuple[int, float]]) -> float:
    """Evaluate, report, keep the best checkpoint and refresh the resume checkpoint."""
    val_loss = run.evaluate()
    history.append((run.step, val_loss))
    reporter.emit(val_loss)
    if val_loss < run.best_val or math.isinf(run.best_val):
        run.best_val, run.stale_evals = min(val_loss, run.best_val), 0
        run.save(BEST, val_loss, reporter.last_loss, with_state=False)
    else:
        run.stale_evals += 1
    run.save(LAST, val_loss, reporter.last_loss, with_state=True)
    return val_loss


def train(
    spec: TrainSpec,
    text: str,
    callbacks: Callbacks | None = None,
    checkpoint_dir: Path | None = None,
    resume: Path | None = None,
) -> TrainResult:
    """Train an LM on `text` until a stop condition; checkpoint into checkpoint_dir.

    spec.tokenizer picks the unit (char | word | bpe); the tokenizer is fitted on the
    training part and stored in every checkpoint.

    With `resume` (a LAST checkpoint), step count, optimizer, RNG and data position
    continue from it; the recurrent state restarts from zeros.
    """
    cb = callbacks or Callbacks()
    run = _Run(spec, text, checkpoint_dir, resume)
    run.on_checkpoint = cb.on_checkpoint
    run.model.train()
    reporter = _Reporter(run, cb.on_step)
    history: list[tuple[int, float]] = []
    stopped_by = run.stop_reason()
    start = time.perf_counter() - run.elapsed  # moved forward by evaluation time below
    saved_at = run.elapsed

    while stopped_by is None:
        state: State | None = None
        run.epoch_rng = run.generator.get_state()  # resume redraws this epoch's offset
        steps_before = run.step
        for x, y in run.streams.epoch(run.generator, start=run.window):
            loss, grad_norm, state = run.train_window(x, y, state)
            reporter.add(loss, grad_norm, x.numel())
            run.window += 1
            run.elapsed = time.perf_counter() - start
            stopped_by = run.stop_reason()
            if run.step % spec.eval_every == 0 and stopped_by is None:
                eval_start = time.perf_counter()
                _validate_and_save(run, reporter, history)
                start += time.perf_counter() - eval_start
                if spec.patience is not None and run.stale_evals >= spec.patience:
                    stopped_by = "early_stop"
                saved_at = run.elapsed
            elif run.step % spec.checkpoint_every == 0 or run.elapsed - saved_at >= spec.checkpoint_seconds:
                reporter.emit()  # also checks the loss is finite before it is saved
                run.save(LAST, None, reporter.last_loss, with_state=True)
                saved_at = run.elapsed
            elif reporter.due():
                reporter.emit()
            if stopped_by is None and cb.should_stop():
                stopped_by = "requested"
            if stopped_by is not None:
                break
        else:
            if run.step == steps_before:
                raise data.CorpusTooShortError("an epoch produced no training window")
            run.epoch, run.window = run.epoch + 1, 0

    if reporter.count:
        reporter.emit()  # checks the last steps' loss before anything is saved
    val_loss = _validate_and_save(run, reporter, history)
    assert stopped_by is not None
    return TrainResult(
        tokenizer=run.tokenizer.kind,
        perplexity=lm_task.perplexity(run.best_val),
        bpc=lm_task.bits_per_char(run.best_val, len(run.val_ids), run.val_chars),
        steps=run.step,
        epochs=run.epoch + run.window / run.steps_per_epoch,
        tokens=reporter.tokens,
        train_loss=reporter.last_loss,
        val_loss=val_loss,
        best_val_loss=run.best_val,
        tokens_per_s=reporter.average_rate(),
        elapsed=run.elapsed,
        stopped_by=stopped_by,
        parameters=count_parameters(run.model),
        vocab_size=len(run.tokenizer),
        device=str(run.dev),
        checkpoint=(checkpoint_dir / BEST) if checkpoint_dir else None,
        history=history,
    )
