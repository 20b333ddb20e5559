"""Forecast errors in the target's units, and the seasonal-naive baseline they are judged by.

Every window contributes its H errors; MAE and RMSE average over all (window, step) pairs.
The baseline forecasts each step with the value one season earlier, repeating the last
observed season for steps beyond it (season 1 = persistence: the last value, H times):

    season 3, H = 5:   observed ... a b c | forecast a b c a b
"""

from __future__ import annotations

import math

import torch


def seasonal_naive(y: torch.Tensor, origins: torch.Tensor, horizon: int, season: int) -> torch.Tensor:
    """(B, H): for step h (1-based) the value at t + h - season * ceil(h / season)."""
    h = torch.arange(1, horizon + 1, device=y.device)
    back = h - season * torch.div(h + season - 1, season, rounding_mode="floor")
    return y[origins.to(y.device)[:, None] + back]


def errors(forecast: torch.Tensor, actual: torch.Tensor) -> tuple[float, float]:
    """(MAE, RMSE) over every element."""
    diff = (forecast.double() - actual.double()).flatten()
    if diff.numel() == 0:
        return math.nan, math.nan
    return float(diff.abs().mean()), float(diff.square().mean().sqrt())


def figures(forecast: torch.Tensor, baseline: torch.Tensor, actual: torch.Tensor) -> dict[str, float]:
    """mae, rmse of the model and baseline_mae, baseline_rmse of the baseline on the same windows."""
    mae, rmse = errors(forecast, actual)
    base_mae, base_rmse = errors(baseline, actual)
    return {"mae": mae, "rmse": rmse, "baseline_mae": base_mae, "baseline_rmse": base_rmse}


def holt_winters_figures(forecast: torch.Tensor, actual: torch.Tensor) -> dict[str, float]:
    """holt_winters_mae, holt_winters_rmse of Holt-Winters' forecasts (see holt_winters.py)."""
    mae, rmse = errors(forecast, actual)
    return {"holt_winters_mae": mae, "holt_winters_rmse": rmse}


def skill(rmse: float, baseline_rmse: float) -> float:
    """1 - rmse / baseline_rmse: 0 = as good as the baseline, 1 = perfect, < 0 = worse."""
    if not baseline_rmse > 0:
        return math.nan
    return 1.0 - rmse / baseline_rmse
