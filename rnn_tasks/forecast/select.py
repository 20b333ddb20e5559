"""transform=auto: the season and the transform, chosen on the training part alone.

    rows   |------------------ training part (split) ------------------|-- held out --|
           |------- inner training -------|--- inner validation ---|
                                           max(val_fraction of the part, horizon) rows

The season, when none is given, is the lag of the strongest peak in the autocorrelation
of the training part's first differences. Then every transform the training part allows
is trained with the job's own settings on the inner training rows and scored by RMSE,
in the target's units, on the inner validation windows; the lowest wins. Allowed: log
ones only for positive values, seasonal differences only with a season, none that
leaves the inner training rows too few for a window, and with a season only the
differencing ones (a network that forecasts levels cannot follow a trend past the
values it was trained on, and on one validation fold a level model that happens to fit
a bend in the series can win the fold and then lose badly after it). Nothing after
`split` is read, so the held-out figures of the final model test the choice honestly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rnn_tasks.forecast.spec import AUTO, TRANSFORMS, ForecastSpec, Series

_MIN_PEAK = 0.2  # weakest autocorrelation taken as a season (and at least 2 standard errors)
_SHORTER_PEAK = 0.8  # a divisor of the best lag with this share of its peak is the season (12, not 24)
_MAX_SEASON = 400  # longest period searched (a year of days fits)


@dataclass(frozen=True)
class Choice:
    """The resolved spec and how it was chosen (JSON-able through to_dict)."""

    spec: ForecastSpec
    season_from: str  # given | none given (a fixed transform) | autocorrelation | none found
    scores: dict[str, float] = field(default_factory=dict)  # transform -> inner validation RMSE
    inner_rows: tuple[int, int] = (0, 0)  # (inner training rows, inner validation rows)

    def to_dict(self) -> dict[str, Any]:
        return {"transform": self.spec.transform, "season": self.spec.season, "season_from": self.season_from,
                "validation_rmse": {k: v if math.isfinite(v) else None for k, v in self.scores.items()},
                "inner_rows": list(self.inner_rows)}


def detect_season(values: list[float]) -> int | None:
    """The period of the strongest autocorrelation peak of the first differences, or None."""
    x = np.diff(np.asarray(values, dtype=float))
    n = len(x)
    if n < 8:
        return None
    x -= x.mean()
    denom = float(x @ x)
    if denom <= 0:
        return None
    top = min(n // 2, _MAX_SEASON)  # two full seasons at least
    acf = [1.0] + [float(x[k:] @ x[:-k]) / denom for k in range(1, top + 2)]
    floor = max(_MIN_PEAK, 2 / math.sqrt(n))
    peaks = [k for k in range(2, top + 1) if acf[k] > floor and acf[k] >= acf[k - 1] and acf[k] >= acf[k + 1]]
    if not peaks:
        return None
    best = max(peaks, key=acf.__getitem__)
    return next(k for k in peaks if best % k == 0 and acf[k] >= _SHORTER_PEAK * acf[best])


def inner_split(spec: ForecastSpec, split: int) -> int:
    """First row of the inner validation part: the training part's last val_fraction, at least a horizon."""
    return split - max(int(split * spec.val_fraction), spec.horizon)


def candidates(spec: ForecastSpec, values: list[float], inner: int) -> list[ForecastSpec]:
    """Concrete specs worth trying on these training values (spec.season already resolved)."""
    out = []
    seasonal = (spec.season or 1) >= 2
    for transform in TRANSFORMS:
        if transform.startswith("log") and min(values) <= 0:
            continue
        if transform.endswith("sdiff") and not seasonal:
            continue
        if seasonal and not transform.endswith("diff"):
            continue
        cand = replace(spec, transform=transform)
        if cand.lag + cand.lookback + cand.horizon > inner:  # not one inner training window
            continue
        out.append(cand)
    return out


def choose(spec: ForecastSpec, series: Series, split: int,
           score: Callable[[ForecastSpec, Series, int], float]) -> Choice:
    """Resolve transform=auto (and the season) using rows before `split` only.

    score(candidate, training part, inner split) trains the candidate on the rows before the
    inner split and returns its RMSE on the windows after it.
    """
    if spec.transform != AUTO:
        return Choice(spec, "given" if spec.season else "none given")
    part = Series(series.time_column, series.names, series.times[:split], [c[:split] for c in series.columns])
    values = part.columns[0]
    season, season_from = spec.season, "given"
    if season is None:
        season = detect_season(values)
        season_from = "autocorrelation" if season else "none found"
    resolved = replace(spec, season=season)
    inner = inner_split(spec, split)
    scores: dict[str, float] = {}
    best, best_rmse = replace(resolved, transform="none"), math.inf  # none: when no candidate fits
    for cand in candidates(resolved, values, inner):
        rmse = scores[cand.transform] = score(cand, part, inner)
        if rmse < best_rmse:  # NaN never wins
            best, best_rmse = cand, rmse
    return Choice(best, season_from, scores, (inner, split - inner))
