"""The forecast task's entry points for the worker: train, predict, evaluate.

train() resolves transform=auto on the training part (rnn_tasks.forecast.select), then
fits a Forecaster with the shared loop (rnn_tasks.loop.fit) on the CSV series. The
checkpoint's spec is the resolved one; its meta carries the column names, the
normaliser and the Holt-Winters parameters fitted on the training part, and how the
transform was chosen, so predict() and evaluate() read new CSVs exactly as training did
and show the model beside seasonal naive and Holt-Winters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rnn_tasks import checkpoint, loop
from rnn_tasks import device as devices
from rnn_tasks.forecast import data, holt_winters, metrics, select
from rnn_tasks.forecast.model import Forecaster, ForecasterConfig, upgrade_state_dict
from rnn_tasks.forecast.spec import (
    ForecastSpec,
    Series,
    check_new_rows,
    check_series,
    read_new_series,
    read_series,
    split_point,
)
from rnn_tasks.loop import Callbacks
from rnn_tasks.spec import SpecError, TrainSpec

_EVAL_BATCH = 1024  # windows per forward pass when evaluating


class ForecastProblem(loop.Problem):
    """Windows of the training part as batches; the held-out tail's windows for evaluate().

    `split` (default: from val_fraction) is the first held-out row; with `baselines` the
    Holt-Winters forecasts of the held-out windows are computed once, here.
    """

    model: Forecaster

    def __init__(self, spec: ForecastSpec, series: Series, dev: torch.device, split: int | None = None,
                 baselines: bool = True) -> None:
        self.spec = spec
        split = split_point(len(series), spec.val_fraction) if split is None else split
        self.norm = data.Normaliser.fit(spec, series, split)
        self.data = data.prepare(spec, series, self.norm, dev)
        self.train_origins = data.train_origins(spec, split)
        self.val_origins = data.heldout_origins(spec, split, len(series))
        config = _config(spec, len(series.names))
        self.model = Forecaster(config).to(dev)
        hw = holt_winters.fit(series.columns[0][:split], spec.season or 1, series.times[0]) if baselines else None
        self.hw_forecast = _hw_forecast(hw, spec, series, self.val_origins)
        self.meta: dict[str, Any] = {
            "time_column": series.time_column,
            "target": series.names[0],
            "features": list(series.names[1:]),
            "inputs": config.inputs,
            "normaliser": self.norm.to_meta(),
            "rows": {"train": split, "heldout": len(series) - split},
            "holt_winters": hw.to_meta() if hw is not None else None,
        }

    def batches_per_epoch(self) -> int:
        return -(-len(self.train_origins) // self.spec.batch_size)

    def epoch(self, generator: torch.Generator, start: int) -> Iterator[torch.Tensor]:
        order = self.train_origins[torch.randperm(len(self.train_origins), generator=generator)]
        for i in range(start * self.spec.batch_size, len(order), self.spec.batch_size):
            yield order[i : i + self.spec.batch_size]

    def loss(self, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
        x, y = data.batch(self.spec, self.data, batch)
        # Each member by its own error (not the mean's), so that they stay independent.
        return F.mse_loss(self.model.member_outputs(x), y.expand(self.spec.ensemble, *y.shape)), len(batch)

    def evaluate(self) -> dict[str, float]:
        return _evaluate(self.spec, self.model, self.norm, self.data, self.val_origins, self.hw_forecast)


def _hw_forecast(hw: holt_winters.HoltWinters | None, spec: ForecastSpec, series: Series,
                 origins: torch.Tensor) -> torch.Tensor | None:
    """Holt-Winters' (B, H) forecasts of the windows at `origins`, or None without a fit."""
    if hw is None or len(origins) == 0:
        return None
    out = holt_winters.forecasts(hw, series.columns[0], series.times[0], origins.tolist(), spec.horizon)
    return torch.from_numpy(out)


def _config(spec: ForecastSpec, inputs: int) -> ForecasterConfig:
    return ForecasterConfig(inputs=inputs, horizon=spec.horizon, arch=spec.arch, hidden=spec.hidden,
                            layers=spec.layers, dropout=spec.dropout, members=spec.ensemble)


def _evaluate(spec: ForecastSpec, model: torch.nn.Module, norm: data.Normaliser, prepared: data.Prepared,
              origins: torch.Tensor, hw_forecast: torch.Tensor | None) -> dict[str, float]:
    """val_loss (normalised MSE) and errors in the target's units beside the baselines'."""
    outs, losses = [], []
    for chunk in origins.split(_EVAL_BATCH):
        x, y = data.batch(spec, prepared, chunk)
        out = model(x)
        losses.append(F.mse_loss(out, y, reduction="sum"))
        outs.append(out)
    if not outs:
        raise ValueError("no held-out window: the series is shorter than lookback + horizon")
    forecast = data.invert(spec, norm, prepared, origins, torch.cat(outs))
    baseline = metrics.seasonal_naive(prepared.y, origins, spec.horizon, spec.season or 1)
    actual = data.actual(spec, prepared, origins)
    figures = metrics.figures(forecast, baseline, actual)
    if hw_forecast is not None:
        figures.update(metrics.holt_winters_figures(hw_forecast.to(actual.device), actual))
    return {"val_loss": float(sum(losses)) / (len(origins) * spec.horizon), **figures}


def train(spec: TrainSpec, files: dict[str, bytes], callbacks: Callbacks | None, checkpoint_dir: Path | None,
          resume: Path | None) -> dict[str, Any]:
    if not isinstance(spec, ForecastSpec):
        raise TypeError(f"forecast.train needs a ForecastSpec, got {type(spec).__name__}")
    series = read_series(files["data"], spec.time_column, spec.target, spec.features, spec.delimiter)
    check_series(spec, series)
    dev = _device(spec, spec.device)
    split = split_point(len(series), spec.val_fraction)
    if resume is not None:  # the choice made before the interruption, whatever a rerun would pick
        ckpt = checkpoint.read(resume)
        resolved = replace(spec, transform=ckpt.spec["transform"], season=ckpt.spec["season"])
        chosen = ckpt.meta.get("choice")
    else:
        stop = callbacks.should_stop if callbacks is not None else Callbacks().should_stop
        choice = select.choose(spec, series, split, _scorer(dev, stop))
        resolved, chosen = choice.spec, choice.to_dict()
    check_series(resolved, series)
    torch.manual_seed(spec.seed)
    problem = ForecastProblem(resolved, series, dev, split)
    problem.meta["choice"] = chosen
    summary = loop.fit(resolved, problem, callbacks, checkpoint_dir, resume)
    best = summary["metrics"]
    for key in FIGURES:
        summary[key] = best.get(key)
    summary["skill"] = _skill(best)
    summary["skill_vs_holt_winters"] = _skill(best, "holt_winters_rmse")
    summary.update(target=series.names[0], time_column=series.time_column, features=list(series.names[1:]))
    summary.update(transform=resolved.transform, season=resolved.season, choice=chosen)
    return summary


# Held-out figures a train summary lifts out of the best evaluation.
FIGURES = ("mae", "rmse", "baseline_mae", "baseline_rmse", "holt_winters_mae", "holt_winters_rmse")


def _scorer(dev: torch.device, should_stop: Callable[[], bool]) -> Callable[[ForecastSpec, Series, int], float]:
    """select.choose's score: train a candidate on the inner rows, its inner-validation RMSE.

    One network per candidate, not the ensemble: members differ only in their initial
    weights, so one ranks the transforms at a fraction of the cost.
    """
    def score(cand: ForecastSpec, part: Series, inner: int) -> float:
        cand = replace(cand, ensemble=1)
        torch.manual_seed(cand.seed)
        problem = ForecastProblem(cand, part, dev, inner, baselines=False)
        summary = loop.fit(cand, problem, Callbacks(should_stop=should_stop), None, None)
        rmse = summary["metrics"].get("rmse")
        return float(rmse) if rmse is not None else math.inf
    return score


def _skill(figures: dict[str, Any], baseline: str = "baseline_rmse") -> float | None:
    """1 - rmse / the baseline's rmse (seasonal naive unless named), None when either is missing."""
    if figures.get("rmse") is None or figures.get(baseline) is None:
        return None
    value = metrics.skill(figures["rmse"], figures[baseline])
    return None if math.isnan(value) else value  # NaN (a constant series) is not JSON


def _device(spec: ForecastSpec, device: str) -> torch.device:
    dev = devices.resolve(device)
    devices.configure(dev)
    return dev


def _restore(checkpoint: Path, device: str) -> tuple[ForecastSpec, dict[str, Any], Forecaster, torch.device]:
    """The resolved spec, the meta (with the training's held-out figures as "heldout"), the model."""
    ckpt, weights = loop.load(checkpoint, "cpu")
    spec = ForecastSpec.from_dict(ckpt.spec)
    dev = _device(spec, device)
    model = Forecaster(_config(spec, int(ckpt.meta["inputs"]))).to(dev)
    model.load_state_dict(upgrade_state_dict(weights))
    model.eval()  # CPU threads: set by loop.load
    heldout = {k: ckpt.metrics[k] for k in FIGURES if ckpt.metrics.get(k) is not None}
    return spec, {**ckpt.meta, "heldout": heldout}, model, dev


def _holt_winters(meta: dict[str, Any]) -> holt_winters.HoltWinters | None:
    hw = meta.get("holt_winters")
    return holt_winters.HoltWinters.from_meta(hw) if hw else None


@torch.no_grad()
def predict(checkpoint: Path, inputs: bytes, options: dict[str, Any], device: str) -> dict[str, Any]:
    """Forecast the `horizon` steps after the last row of the CSV `inputs`. No options are used."""
    spec, meta, model, dev = _restore(checkpoint, device)
    series = read_new_series(spec, meta, inputs)
    check_new_rows(spec, len(series), "predict")
    norm = data.Normaliser.from_meta(meta["normaliser"])
    prepared = data.prepare(spec, series, norm, dev)
    origin = torch.tensor([len(series) - 1])
    forecast = data.invert(spec, norm, prepared, origin, model(data.last_input(spec, prepared)))
    hw = _hw_forecast(_holt_winters(meta), spec, series, origin)
    naive = metrics.seasonal_naive(prepared.y, origin, spec.horizon, spec.season or 1) if len(series) >= (
        spec.season or 1) else None
    return {"forecast": [float(v) for v in forecast[0]], "horizon": spec.horizon, "target": meta["target"],
            "after": series.times[-1], "transform": spec.transform, "season": spec.season,
            "seasonal_naive_forecast": None if naive is None else [float(v) for v in naive[0]],
            "holt_winters_forecast": None if hw is None else [float(v) for v in hw[0]],
            "heldout": _with_skill(meta["heldout"])}


def _with_skill(figures: dict[str, Any]) -> dict[str, Any]:
    """The training's held-out figures and the model's skill over each baseline (None if not known)."""
    out = dict(figures)
    out["skill"] = _skill(figures)
    out["skill_vs_holt_winters"] = _skill(figures, "holt_winters_rmse")
    return out


@torch.no_grad()
def evaluate(checkpoint: Path, files: dict[str, bytes], device: str = "auto",
             options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rolling-origin errors over every window of files["data"] whose targets lie in it."""
    if options:
        raise SpecError(next(iter(options)), "unknown option; evaluating a forecast takes none")
    spec, meta, model, dev = _restore(checkpoint, device)
    series = read_new_series(spec, meta, files["data"])
    check_new_rows(spec, len(series), "eval")
    origins = data.heldout_origins(spec, 0, len(series))
    norm = data.Normaliser.from_meta(meta["normaliser"])
    hw = _hw_forecast(_holt_winters(meta), spec, series, origins)
    figures = _evaluate(spec, model, norm, data.prepare(spec, series, norm, dev), origins, hw)
    del figures["val_loss"]
    return {**_with_skill(figures), "windows": len(origins), "target": meta["target"],
            "transform": spec.transform, "season": spec.season}
