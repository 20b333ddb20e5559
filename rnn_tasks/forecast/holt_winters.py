"""Holt-Winters exponential smoothing: the classical baseline a forecast is shown beside.

statsmodels' ExponentialSmoothing is fitted on the training part only (additive trend;
additive or multiplicative season, the one with the lower AIC; no season without two
full seasons of data). Its parameters travel in the checkpoint meta, and `forecasts`
runs the same recursions (Hyndman & Athanasopoulos, "Forecasting: principles and
practice", 8.3) over any series with those parameters fixed, so every window is
forecast from the observed history up to its origin, as the RNN's windows are:

    level   l_t = a (y_t - s_{t-m}) + (1 - a)(l_{t-1} + b_{t-1})       (/ s_{t-m} if mul)
    trend   b_t = b (l_t - l_{t-1}) + (1 - b) b_{t-1}
    season  s_t = g (y_t - l_{t-1} - b_{t-1}) + (1 - g) s_{t-m}         (/ (l + b) if mul)
    forecast from origin t, step h:  (l_t + h b_t) + s_{t+h-m(k+1)},  k = (h - 1) // m
                                     (* if mul), except that steps h = m, 2m, ... use
                                     s_{t-m} instead of s_t, as statsmodels' forecast does

A series that starts at the training part's first time stamp starts from the fitted
initial states; any other starts from the usual heuristic (level and season from its
first two seasons).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_ESTIMATED_SEASONS = 60  # longest season whose initial values are fitted (weekly and monthly ones are)


@dataclass(frozen=True)
class HoltWinters:
    """Fitted parameters and initial states (statsmodels' names, without the prefixes)."""

    season: int  # m; 1 = no seasonal component
    seasonal: str | None  # "add", "mul" or None
    level: float  # smoothing_level (alpha)
    trend: float  # smoothing_trend (beta)
    seasonal_smoothing: float  # smoothing_seasonal (gamma); 0 without a season
    initial_level: float
    initial_trend: float
    initial_seasons: list[float]  # s_{1-m} .. s_0
    start: str  # time stamp of the first training row

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> HoltWinters:
        return cls(**meta)


def fit(y: list[float], season: int, start: str) -> HoltWinters | None:
    """Fit on the training values y; None when there are too few (fewer than 4) or the fit fails."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    if len(y) < 4:
        return None
    seasonals: list[str | None] = [None]
    if season > 1 and len(y) >= 2 * season + 2:
        seasonals = ["add", "mul"] if min(y) > 0 else ["add"]
    best: tuple[float, HoltWinters] | None = None
    for seasonal in seasonals:
        try:
            with warnings.catch_warnings():  # convergence chatter on short series
                warnings.simplefilter("ignore")
                model = ExponentialSmoothing(np.asarray(y, dtype=float), trend="add", seasonal=seasonal,
                                             seasonal_periods=season if seasonal else None,
                                             initialization_method=_initialization(season if seasonal else 1))
                result = model.fit()
        except Exception:  # a baseline that cannot be fitted is left out; it never fails the job
            log.warning("Holt-Winters (season %s) could not be fitted", seasonal, exc_info=True)
            continue
        if not math.isfinite(result.aic):
            continue
        p = result.params
        hw = HoltWinters(
            season=season if seasonal else 1, seasonal=seasonal, level=float(p["smoothing_level"]),
            trend=float(p["smoothing_trend"]), seasonal_smoothing=float(p["smoothing_seasonal"]) if seasonal else 0.0,
            initial_level=float(p["initial_level"]), initial_trend=float(p["initial_trend"]),
            initial_seasons=[float(s) for s in p["initial_seasons"]] if seasonal else [], start=start)
        if best is None or result.aic < best[0]:
            best = (float(result.aic), hw)
    return None if best is None else best[1]


def _initialization(season: int) -> str:
    """statsmodels' way to the initial states: fitted with the rest ("estimated") unless the
    season is long, where fitting hundreds of initial seasons takes minutes ("heuristic")."""
    return "estimated" if season <= _ESTIMATED_SEASONS else "heuristic"


def forecasts(hw: HoltWinters, y: list[float], first_time: str, origins: list[int], horizon: int) -> np.ndarray:
    """(B, H) forecasts of the steps after each origin (a row index of y), from y[: origin + 1]."""
    level, trend, seasons = _initial(hw, y, first_time)
    m, mul = hw.season, hw.seasonal == "mul"
    want = {o: i for i, o in enumerate(origins)}
    out = np.full((len(origins), horizon), np.nan)
    hist = list(seasons)  # s_{t-m+1} .. s_t once step t is done; a ring would do, a list reads better
    for t, value in enumerate(y):
        if hw.seasonal:
            s_old = hist[-m]
            new_level = hw.level * (value / s_old if mul else value - s_old) + (1 - hw.level) * (level + trend)
            base = level + trend
            s_new = hw.seasonal_smoothing * (value / base if mul else value - base) + (1 - hw.seasonal_smoothing) * s_old
            hist.append(s_new)
        else:
            new_level = hw.level * value + (1 - hw.level) * (level + trend)
        trend = hw.trend * (new_level - level) + (1 - hw.trend) * trend
        level = new_level
        if t in want:
            out[want[t]] = _ahead(hw, level, trend, hist, horizon)
    return out


def _ahead(hw: HoltWinters, level: float, trend: float, hist: list[float], horizon: int) -> np.ndarray:
    h = np.arange(1, horizon + 1)
    path = level + h * trend
    if not hw.seasonal:
        return path
    m = hw.season
    last = np.asarray(hist[-m:-1] + [hist[-m - 1]])  # s_{t-m+1} .. s_{t-1}, then s_{t-m} (statsmodels)
    s = last[(h - 1) % m]
    return path * s if hw.seasonal == "mul" else path + s


def _initial(hw: HoltWinters, y: list[float], first_time: str) -> tuple[float, float, list[float]]:
    """(l_0, b_0, [s_{1-m} .. s_0]): the fitted ones for the training series, else a heuristic."""
    if first_time == hw.start:
        return hw.initial_level, hw.initial_trend, list(hw.initial_seasons)
    m = hw.season
    if not hw.seasonal or len(y) < 2 * m:
        trend = (y[1] - y[0]) if len(y) > 1 else 0.0
        neutral = 1.0 if hw.seasonal == "mul" else 0.0
        return y[0], trend, [neutral] * (m if hw.seasonal else 0)
    first, second = np.mean(y[:m]), np.mean(y[m : 2 * m])
    seasons = [v / first if hw.seasonal == "mul" else v - first for v in y[:m]]
    return float(first), float((second - first) / m), [float(s) for s in seasons]
