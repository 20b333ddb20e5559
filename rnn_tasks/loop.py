"""The training loop every task shares (lm, classify, forecast, translate, transcribe).

A task describes its problem (model, batches, loss, held-out evaluation, metadata) as a
Problem; fit() does the rest exactly as the language model's loop does: AdamW with
weight decay on matrices, optional L1, gradient clipping, warmup + cosine learning
rate, bf16 autocast (CUDA; CPUs with AMX or AVX512-BF16), stop conditions, evaluation with early stopping, progress
reports through callbacks, checkpoints (best and resumable last) and resume. It knows
nothing of queues.

With spec.ema the weights evaluated, and kept as the best checkpoint, are an exponential
moving average of the trained ones (_Average); training goes on from the model's own
weights, and the resumable checkpoint keeps both.

    epoch e:  batches in an order drawn from the generator saved at the epoch's start
              |b0 b1 b2 ... bk|   resume = restore that generator, skip the first k
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnn_tasks import checkpoint
from rnn_tasks import device as devices
from rnn_tasks.checkpoint import Checkpoint
from rnn_tasks.errors import InputError, NumericalError
from rnn_tasks.spec import TrainSpec

__all__ = ["BEST", "LAST", "REPORT_SECONDS", "Callbacks", "NumericalError", "Problem", "StepMetrics", "fit", "load",
           "lr_at"]

BEST = "best.safetensors"  # lowest validation loss: what predict, generate and evaluate read
LAST = "last.safetensors"  # latest state with optimizer and RNG: what resume reads
REPORT_SECONDS = 0.5  # on_step is called at most this often (and at every evaluation)


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
    tokens: int = 0  # trained since this call of fit() began (a resume starts again at 0)
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


def lr_at(spec: TrainSpec, step: int, progress: float) -> float:
    """Linear warmup over warmup_steps, then cosine from lr to min_lr_ratio * lr.

    The cosine runs over `progress` (0..1 towards the nearest stop condition), so the
    same schedule serves step, epoch and wall-clock budgets.
    """
    warm = min(1.0, (step + 1) / spec.warmup_steps) if spec.warmup_steps else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return spec.lr * warm * (spec.min_lr_ratio + (1.0 - spec.min_lr_ratio) * cosine)


class Problem:
    """What a task gives fit(). Subclasses set model and meta and implement the rest."""

    model: torch.nn.Module  # on its device already
    meta: dict[str, Any]  # JSON-able, saved with every checkpoint

    def batches_per_epoch(self) -> int:
        raise NotImplementedError

    def epoch(self, generator: torch.Generator, start: int) -> Iterator[Any]:
        """This epoch's batches in an order drawn from generator, skipping the first `start`."""
        raise NotImplementedError

    def loss(self, batch: Any) -> tuple[torch.Tensor, int]:
        """The batch's training loss and its size in tokens (or items)."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Held-out figures; must include "val_loss" (lower is better)."""
        raise NotImplementedError

    def tied(self) -> dict[str, str]:
        """Weights stored once under another name ({"head.weight": "embed.weight"}): none by default."""
        return {}

    def lr_groups(self) -> list[tuple[list[torch.nn.Parameter], float]] | None:
        """Parameters by group, each with its share of the scheduled learning rate (the first
        group's is the lr reported); None, the default: the whole model at the full rate."""
        return None

    def before_step(self, progress: float) -> None:
        """Called before every training step with progress (0..1): a task may freeze or thaw layers."""


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches done in the current epoch
    elapsed: float = 0.0  # training seconds, evaluation excluded
    best_val: float = math.inf
    stale_evals: int = 0
    last_loss: float = math.nan
    tokens: int = 0  # trained in this call of fit()
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluate() at the best checkpoint


class _Fit:
    def __init__(self, spec: TrainSpec, problem: Problem, checkpoint_dir: Path | None) -> None:
        self.spec, self.problem, self.checkpoint_dir = spec, problem, checkpoint_dir
        self.on_checkpoint: Callable[[str, Path, int], None] = Callbacks.on_checkpoint
        self.dev = next(problem.model.parameters()).device
        model = problem.model
        self.threads = devices.fit_threads(model, self.dev)  # every kind's training passes here
        self.bf16 = devices.bf16(self.dev, spec.amp, devices.shapes(model), spec.CPU_BF16)
        groups = problem.lr_groups() or [(list(model.parameters()), 1.0)]
        self.optimizer = torch.optim.AdamW([g for params, scale in groups for g in _decay_split(params, scale, spec)],
                                           lr=spec.lr)
        self.average = _Average(model, spec.ema) if spec.ema else None
        self.generator = torch.Generator().manual_seed(spec.seed)
        self.epoch_rng = self.generator.get_state()
        self.s = _State()

    def restore(self, path: Path) -> None:
        ckpt, weights = checkpoint.load(path, self.dev)
        self.problem.model.load_state_dict(weights)
        optim_state, rng = checkpoint.load_training_state(path)
        if optim_state is not None:
            self.optimizer.load_state_dict(optim_state)
        if rng is not None:
            self.generator.set_state(rng)
        if self.average is not None:  # without a saved average it starts again from the restored weights
            self.average = _Average(self.problem.model, self.spec.ema, checkpoint.load_average(path))
        pos = ckpt.position
        self.s = _State(step=ckpt.step, epoch=int(pos.get("epoch", 0)), batch=int(pos.get("batch", 0)),
                        elapsed=float(pos.get("elapsed", 0.0)), stale_evals=int(pos.get("stale_evals", 0)),
                        best_val=ckpt.best_val_loss if ckpt.best_val_loss is not None else math.inf,
                        last_loss=ckpt.train_loss if ckpt.train_loss is not None else math.nan,
                        metrics=dict(ckpt.metrics))
        torch.manual_seed(self.spec.seed + ckpt.step)  # fresh dropout noise after a resume

    def total_steps(self) -> int | None:
        spec, per_epoch = self.spec, self.problem.batches_per_epoch()
        candidates = []
        if spec.max_steps is not None:
            candidates.append(spec.max_steps)
        if spec.epochs is not None:
            candidates.append(max(1, math.ceil(spec.epochs * per_epoch)))
        if not candidates and spec.time_budget is None:
            candidates.append(per_epoch)  # no stop condition given: one epoch
        return min(candidates) if candidates else None

    def progress(self) -> float:
        parts = [0.0]
        total = self.total_steps()
        if total is not None:
            parts.append(self.s.step / total)
        if self.spec.time_budget is not None:
            parts.append(self.s.elapsed / self.spec.time_budget)
        return min(1.0, max(parts))

    def stop_reason(self) -> str | None:
        if self.spec.time_budget is not None and self.s.elapsed >= self.spec.time_budget:
            return "time_budget"
        total = self.total_steps()
        if total is not None and self.s.step >= total:
            return "max_steps" if self.spec.max_steps is not None and self.s.step >= self.spec.max_steps else "epochs"
        return None

    def train_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        spec, model = self.spec, self.problem.model
        progress = self.progress()
        self.problem.before_step(progress)
        lr = lr_at(spec, self.s.step, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # checkpoints before lr_scale have none
        with devices.autocast(self.dev, self.bf16):
            loss, size = self.problem.loss(batch)
        total = loss + spec.l1 * sum(p.abs().sum() for p in model.parameters() if p.dim() > 1) if spec.l1 else loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), spec.clip if spec.clip else math.inf)
        self.optimizer.step()
        if self.average is not None:
            self.average.update(model, self.s.step)
        self.s.step += 1
        return loss.detach().float(), grad_norm.detach(), size

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.problem.model.eval()
        try:
            with devices.autocast(self.dev, self.bf16):
                return {k: float(v) if isinstance(v, (int, float)) else v for k, v in self.problem.evaluate().items()}
        finally:
            self.problem.model.train()

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside, the model holds the moving average of its weights (spec.ema); its own after."""
        if self.average is None:
            yield
            return
        params = list(self.problem.model.parameters())
        own = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, average in zip(params, self.average.params, strict=True):
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(params, own, strict=True):
                    p.copy_(saved)

    def save(self, name: str, val_loss: float | None, with_state: bool) -> None:
        if self.checkpoint_dir is None:
            return
        s = self.s
        ckpt = Checkpoint(
            task=self.spec.task, spec=self.spec.to_dict(), meta=self.problem.meta, step=s.step, val_loss=val_loss,
            train_loss=None if math.isnan(s.last_loss) else s.last_loss,
            best_val_loss=None if math.isinf(s.best_val) else s.best_val, metrics=s.metrics,
            position={"epoch": s.epoch, "batch": s.batch, "elapsed": s.elapsed, "stale_evals": s.stale_evals},
            tied=self.problem.tied(),
        )
        path = self.checkpoint_dir / name
        if with_state:
            average = self.average.params if self.average is not None else None
            checkpoint.save(path, ckpt, self.problem.model, self.optimizer, self.epoch_rng, average)
        else:
            checkpoint.save(path, ckpt, self.problem.model)
        self.on_checkpoint(name, path, s.step)


class _Average:
    """An exponential moving average of a model's parameters (spec.ema). Its decay warms up
    as TensorFlow's ExponentialMovingAverage does with num_updates, min(ema, (1 + step) /
    (10 + step)), so that a short run's average is not mostly its initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float, saved: list[torch.Tensor] | None = None) -> None:
        self.decay = decay
        own = [p.detach() for p in model.parameters()]
        self.params = [s.to(p.device, p.dtype) for s, p in zip(saved, own, strict=True)] if saved else [
            p.clone() for p in own]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Blend in the weights after training step `step` (counted from 0)."""
        weight = 1.0 - min(self.decay, (1 + step) / (10 + step))
        for average, p in zip(self.params, model.parameters(), strict=True):
            average.lerp_(p.detach(), weight)


def _decay_split(params: list[torch.nn.Parameter], lr_scale: float, spec: TrainSpec) -> list[dict[str, Any]]:
    """One lr group as two optimizer groups: weight decay on matrices, none on biases and gains."""
    return [{"params": [p for p in params if p.dim() > 1], "weight_decay": spec.weight_decay, "lr_scale": lr_scale},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0, "lr_scale": lr_scale}]


class _Reporter:
    """Averages losses between reports (one host sync per report) and calls on_step."""

    def __init__(self, fit: _Fit, callbacks: Callbacks) -> None:
        self.fit, self.callbacks = fit, callbacks
        self.loss_sum = torch.zeros((), device=fit.dev)
        self.count = 0
        self.grad_norm = torch.zeros((), device=fit.dev)
        self.last_time = time.perf_counter()
        self.mark = (0, fit.s.elapsed)

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.loss_sum += loss
        self.grad_norm = grad_norm
        self.count += 1

    def due(self) -> bool:
        return time.perf_counter() - self.last_time >= REPORT_SECONDS

    def emit(self, val_loss: float | None = None, figures: dict[str, float] | None = None) -> None:
        fit, s = self.fit, self.fit.s
        if self.count:
            s.last_loss = float(self.loss_sum) / self.count
            if not math.isfinite(s.last_loss):
                raise NumericalError(f"training loss became {s.last_loss} by step {s.step}: lower the learning "
                                     "rate or clip gradients", "lr")
        tokens, elapsed = self.mark
        dt = s.elapsed - elapsed
        self.callbacks.on_step(StepMetrics(
            step=s.step, epoch=s.epoch + s.batch / max(1, fit.problem.batches_per_epoch()), loss=s.last_loss,
            lr=fit.optimizer.param_groups[0]["lr"], grad_norm=float(self.grad_norm),
            tokens_per_s=(s.tokens - tokens) / dt if dt > 0 else 0.0, progress=fit.progress(), elapsed=s.elapsed,
            total_steps=fit.total_steps(), val_loss=val_loss, device=str(fit.dev), tokens=s.tokens, figures=figures,
            **_memory(fit.dev),
        ))
        self.loss_sum = torch.zeros((), device=fit.dev)
        self.count = 0
        self.last_time = time.perf_counter()
        self.mark = (s.tokens, s.elapsed)


def _memory(dev: torch.device) -> dict[str, Any]:  # StepMetrics' memory_* fields, read once per report
    if dev.type != "cuda":
        return {}
    return {"memory_allocated": torch.cuda.memory_allocated(dev), "memory_reserved": torch.cuda.memory_reserved(dev)}


def _validate_and_save(fit: _Fit, reporter: _Reporter) -> float:
    s = fit.s
    with fit.averaged():
        figures = fit.evaluate()
        val_loss = float(figures["val_loss"])
        others = {k: float(v) for k, v in figures.items() if k != "val_loss" and isinstance(v, (int, float))}
        reporter.emit(val_loss, others or None)
        if val_loss < s.best_val or math.isinf(s.best_val):
            s.best_val, s.stale_evals, s.metrics = val_loss, 0, figures
            fit.save(BEST, val_loss, with_state=False)
        else:
            s.stale_evals += 1
    fit.save(LAST, val_loss, with_state=True)
    return val_loss


def fit(spec: TrainSpec, problem: Problem, callbacks: Callbacks | None = None, checkpoint_dir: Path | None = None,
        resume: Path | None = None) -> dict[str, Any]:
    """Train problem.model until a stop condition; see the module docstring."""
    cb = callbacks or Callbacks()
    run = _Fit(spec, problem, checkpoint_dir)
    run.on_checkpoint = cb.on_checkpoint
    if resume is not None:
        run.restore(resume)
    s = run.s
    resumed_at = s.elapsed
    problem.model.train()
    reporter = _Reporter(run, cb)
    stopped_by = run.stop_reason()
    start = time.perf_counter() - s.elapsed
    saved_at = evaluated_at = s.elapsed
    while stopped_by is None:
        if s.batch >= problem.batches_per_epoch():  # resumed after an epoch's last batch: that epoch is done
            for _ in problem.epoch(run.generator, s.batch):  # draws its order, as the finished run did
                pass
            s.epoch, s.batch = s.epoch + 1, 0
        run.epoch_rng = run.generator.get_state()  # a resume redraws this epoch's order from here
        before = s.step
        for batch in problem.epoch(run.generator, s.batch):
            loss, grad_norm, size = run.train_step(batch)
            reporter.add(loss, grad_norm)
            s.tokens += size
            s.batch += 1
            s.elapsed = time.perf_counter() - start
            stopped_by = run.stop_reason()
            if stopped_by is None and (s.step % spec.eval_every == 0 or (
                    spec.eval_seconds is not None and s.elapsed - evaluated_at >= spec.eval_seconds)):
                eval_start = time.perf_counter()
                _validate_and_save(run, reporter)
                start += time.perf_counter() - eval_start
                if spec.patience is not None and s.stale_evals >= spec.patience:
                    stopped_by = "early_stop"
                saved_at = evaluated_at = s.elapsed
            elif s.step % spec.checkpoint_every == 0 or s.elapsed - saved_at >= spec.checkpoint_seconds:
                reporter.emit()  # checks the loss is finite before it is saved
                run.save(LAST, None, with_state=True)
                saved_at = s.elapsed
            elif reporter.due():
                reporter.emit()
            if stopped_by is None and cb.should_stop():
                stopped_by = "requested"
            if stopped_by is not None:
                break
        else:
            if s.step == before:
                raise InputError("an epoch produced no training batch: the training split is empty", "data")
            s.epoch, s.batch = s.epoch + 1, 0
    if reporter.count:
        reporter.emit()
    val_loss = _validate_and_save(run, reporter)
    return {
        "steps": s.step,
        "epochs": round(s.epoch + s.batch / max(1, problem.batches_per_epoch()), 4),
        "tokens": s.tokens,
        "train_loss": s.last_loss,
        "val_loss": val_loss,
        "best_val_loss": s.best_val,
        "metrics": s.metrics,
        "tokens_per_s": round(s.tokens / max(s.elapsed - resumed_at, 1e-9), 1),
        "elapsed_s": round(s.elapsed, 2),
        "stopped_by": stopped_by,
        "parameters": sum(p.numel() for p in problem.model.parameters()),
        "device": str(run.dev),
        "threads": run.threads,  # CPU intra-op threads it trained with (0 on a GPU); rnn_tasks.device
        "precision": "bf16" if run.bf16 else "fp32",  # under autocast (CUDA; bf16 CPUs: rnn_tasks.device)
    }


def load(path: Path, device: torch.device | str = "cpu") -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """A checkpoint's description and model weights; see rnn_tasks.checkpoint. Every
    predict, evaluate and generate loads its model here, so the CPU threads for running
    it are set here too (rnn_tasks.device), as fit() sets them for training."""
    ckpt, weights = checkpoint.load(path, device)
    devices.fit_shapes({name: w.shape for name, w in weights.items()}, torch.device(device))
    return ckpt, weights
