"""A parsed series as model tensors: transform, normalise, cut into windows, invert.

Indices are rows of the series in time order. A window is named by its origin t, the
last row the model may read:

    rows     ... t-L+1 ... t | t+1 ... t+H
             '-- input (L) --' '- target (H) -'      L = lookback, H = horizon

    training windows   every t with t+H < split      (targets in the training part)
    held-out windows   every t >= split-1, t+H < N   (targets in the held-out tail; the
                                                      input may reach back into training)

The transform (spec.TRANSFORMS) eats the first `lag` rows, so inputs start at row `lag`.
Normalisation is fitted on the training part only and travels in the checkpoint meta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rnn_tasks.forecast.spec import ForecastSpec, Series, first_origin

_MIN_STD = 1e-8  # a constant column is centred but not scaled


@dataclass(frozen=True)
class Normaliser:
    """Per input column (transformed target, then the features): (x - mean) / std."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, spec: ForecastSpec, series: Series, rows: int) -> Normaliser:
        """Fit on the first `rows` rows (the training part) and nothing after them."""
        z = transformed_target(spec, series)[spec.lag : rows]
        cols = [z] + [torch.tensor(c[:rows], dtype=torch.float64) for c in series.columns[1:]]
        mean = [float(c.mean()) for c in cols]
        std = [float(c.std(correction=0)) for c in cols]
        return cls(mean, [s if s > _MIN_STD else 1.0 for s in std])

    def to_meta(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Normaliser:
        return cls([float(m) for m in meta["mean"]], [float(s) for s in meta["std"]])


def transformed_target(spec: ForecastSpec, series: Series) -> torch.Tensor:
    """The target after spec.transform (float64); the first `lag` entries are NaN."""
    w = _level(spec, torch.tensor(series.columns[0], dtype=torch.float64))
    lag = spec.lag
    if lag == 0:
        return w
    z = torch.full_like(w, float("nan"))
    z[lag:] = w[lag:] - w[:-lag]
    return z


def _level(spec: ForecastSpec, y: torch.Tensor) -> torch.Tensor:
    return torch.log(y) if spec.transform.startswith("log") else y


@dataclass
class Prepared:
    """A series ready for the model: y in its own units, normalised inputs and targets."""

    y: torch.Tensor  # (N,) float64, the target as given
    inputs: torch.Tensor  # (N, C) float32, normalised [transformed target, *features]; rows < lag are 0
    targets: torch.Tensor  # (N,) float32, normalised transformed target; rows < lag are 0

    def __len__(self) -> int:
        return len(self.y)


def prepare(spec: ForecastSpec, series: Series, norm: Normaliser, device: torch.device) -> Prepared:
    z = transformed_target(spec, series)
    cols = [z] + [torch.tensor(c, dtype=torch.float64) for c in series.columns[1:]]
    mean = torch.tensor(norm.mean, dtype=torch.float64)
    std = torch.tensor(norm.std, dtype=torch.float64)
    inputs = ((torch.stack(cols, dim=1) - mean) / std).nan_to_num(0.0)
    return Prepared(
        y=torch.tensor(series.columns[0], dtype=torch.float64, device=device),
        inputs=inputs.float().to(device),
        targets=inputs[:, 0].float().to(device),
    )


def train_origins(spec: ForecastSpec, split: int) -> torch.Tensor:
    return torch.arange(first_origin(spec), split - spec.horizon)


def heldout_origins(spec: ForecastSpec, split: int, rows: int) -> torch.Tensor:
    """Windows whose targets all lie at or after `split` (rows before it may be read as input).

    split=0 gives every window of the series (rolling-origin evaluation). The baseline
    needs a season of history, so origins start no earlier than season - 1.
    """
    start = max(split - 1, first_origin(spec), (spec.season or 1) - 1)
    return torch.arange(start, rows - spec.horizon)


def batch(spec: ForecastSpec, data: Prepared, origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, L, C) and normalised targets (B, H) of the windows at `origins`."""
    origins = origins.to(data.inputs.device)
    back = torch.arange(-spec.lookback + 1, 1, device=origins.device)
    ahead = torch.arange(1, spec.horizon + 1, device=origins.device)
    return data.inputs[origins[:, None] + back], data.targets[origins[:, None] + ahead]


def last_input(spec: ForecastSpec, data: Prepared) -> torch.Tensor:
    """The input (1, L, C) ending at the last row: what predict() forecasts from."""
    return data.inputs[len(data) - spec.lookback :][None]


def invert(spec: ForecastSpec, norm: Normaliser, data: Prepared, origins: torch.Tensor,
           out: torch.Tensor) -> torch.Tensor:
    """Normalised transformed forecasts (B, H) -> forecasts in the target's units (float64).

    Differences are added back step by step: with sdiff and a horizon beyond the season,
    step h builds on the forecast of step h - season, not on an observed value.
    """
    z = out.double() * norm.std[0] + norm.mean[0]
    lag = spec.lag
    if lag == 0:
        w = z
    else:
        level = _level(spec, data.y)
        w = torch.empty_like(z)
        origins = origins.to(z.device)
        for h in range(spec.horizon):
            src = h - lag  # the step `lag` rows earlier, inside the horizon when >= 0
            base = w[:, src] if src >= 0 else level[origins + 1 + src]
            w[:, h] = base + z[:, h]
    return torch.exp(w) if spec.transform.startswith("log") else w


def actual(spec: ForecastSpec, data: Prepared, origins: torch.Tensor) -> torch.Tensor:
    """The observed targets (B, H) of the windows at `origins`, in the target's units."""
    ahead = torch.arange(1, spec.horizon + 1, device=data.y.device)
    return data.y[origins.to(data.y.device)[:, None] + ahead]
