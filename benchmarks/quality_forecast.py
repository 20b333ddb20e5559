"""Forecast quality with default flags beside seasonal naive and Holt-Winters, on public series.

    python benchmarks/quality_forecast.py                      # every series, seed 0
    python benchmarks/quality_forecast.py --dataset airline co2 --seed 1 --set transform='"sdiff"'

Each series is cut in two: the last `held_out` rows are never seen. The model is trained
on the rest exactly as `rnnq train DATA --task forecast --target-column T --horizon H` would
(default spec otherwise: transform auto, season detected, its own validation tail), and
its forecasts are scored against two baselines that see the same training rows:

    seasonal naive   the value one season (the series' known period m) earlier; m = 1:
                     the last value (persistence)
    Holt-Winters     statsmodels ExponentialSmoothing, additive trend, additive or
                     multiplicative season of period m (lower AIC; none when m = 1),
                     fitted on the training rows (rnn_tasks.forecast.holt_winters)

once   one forecast of all H held-out rows from the end of the training rows (predict())
roll   H = 1 forecasts of each held-out row from the rows before it (evaluate(), the
       model and the baselines reading the observed history, parameters fixed)

Series (monthly unless noted; period m; held-out rows):
    airline     ../shared/data/timeseries  airline passengers 1949-60, m 12, once 24
    co2         statsmodels co2 (Mauna Loa, weekly -> monthly means, gaps interpolated), m 12, once 24
    elec_equip  statsmodels elec_equip (euro-area electrical equipment orders), m 12, once 24
    elnino      statsmodels elnino (sea surface temperature, 1950-2010), m 12, once 24
    realgdp     statsmodels macrodata realgdp (quarterly, seasonally adjusted), m 4, once 8
    sunspots    ../shared/data/timeseries  monthly sunspots 1749-1983 (an ~11-year cycle, no
                monthly season), m 1, once 24
    temps       ../shared/data/timeseries  daily minimum temperatures, m 1, roll 365

"job_heldout" adds the figures the job itself reports: its model, seasonal naive (its
own season) and Holt-Winters on the last val_fraction of the rows it was given.

Trains in-process with rnn_tasks.forecast.task (what a worker runs) on one CPU and prints
one JSON object per series. --set overrides a ForecastSpec field.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnn_tasks.forecast import data, holt_winters, metrics, task
from rnn_tasks.forecast.spec import ForecastSpec

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "timeseries"


@dataclass(frozen=True)
class Dataset:
    period: int  # m of the baselines
    horizon: int  # --horizon (1 for roll)
    held_out: int
    load: Callable[[Path], tuple[list[str], list[float]]]  # (times, values)


def _shared(name: str) -> Callable[[Path], tuple[list[str], list[float]]]:
    def load(data_dir: Path) -> tuple[list[str], list[float]]:
        with (data_dir / name).open(encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
        return [r[0] for r in rows], [float(r[1]) for r in rows]
    return load


def _co2(_: Path) -> tuple[list[str], list[float]]:
    from statsmodels.datasets import co2

    monthly = co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
    return [t.strftime("%Y-%m") for t in monthly.index], [float(v) for v in monthly]


def _elec_equip(_: Path) -> tuple[list[str], list[float]]:
    from statsmodels.datasets import elec_equip

    frame = elec_equip.load_pandas().data
    return [t.strftime("%Y-%m") for t in frame.index], [float(v) for v in frame.iloc[:, 0]]


def _elnino(_: Path) -> tuple[list[str], list[float]]:
    from statsmodels.datasets import elnino

    frame = elnino.load_pandas().data
    times, values = [], []
    for _, row in frame.iterrows():
        for month, value in enumerate(row.iloc[1:13], 1):
            times.append(f"{int(row['YEAR'])}-{month:02d}")
            values.append(float(value))
    return times, values


def _realgdp(_: Path) -> tuple[list[str], list[float]]:
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data
    times = [f"{int(y)}-{3 * int(q) - 2:02d}" for y, q in zip(frame["year"], frame["quarter"], strict=True)]
    return times, [float(v) for v in frame["realgdp"]]


DATASETS = {
    "airline": Dataset(12, 24, 24, _shared("airline-passengers.csv")),
    "co2": Dataset(12, 24, 24, _co2),
    "elec_equip": Dataset(12, 24, 24, _elec_equip),
    "elnino": Dataset(12, 24, 24, _elnino),
    "realgdp": Dataset(4, 8, 8, _realgdp),
    "sunspots": Dataset(1, 24, 24, _shared("monthly-sunspots.csv")),
    "temps": Dataset(1, 1, 365, _shared("daily-min-temperatures.csv")),
}


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _csv(times: list[str], values: list[float]) -> bytes:
    return ("time,value\n" + "".join(f"{t},{v!r}\n" for t, v in zip(times, values, strict=True))).encode()


def run(name: str, args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    ds = DATASETS[name]
    times, values = ds.load(args.data_dir)
    cut = len(values) - ds.held_out
    fields = {"target": "value", "horizon": ds.horizon, "seed": args.seed, **overrides}
    spec = ForecastSpec(data="benchmark/series", device="cpu", **fields)
    cpu, wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = task.train(spec, {"data": _csv(times[:cut], values[:cut])}, None, Path(tmp), None)
        best = Path(tmp) / "best.safetensors"
        if ds.horizon == ds.held_out:  # once: one forecast of the whole held-out tail
            origins = torch.tensor([cut - 1])
            model = torch.tensor([task.predict(best, _csv(times[:cut], values[:cut]), {}, "cpu")["forecast"]])
        else:  # roll: one step at a time over the tail, reading the observed history
            resolved = ForecastSpec.from_dict({**spec.to_dict(), "transform": summary["transform"],
                                               "season": summary["season"]})
            context = data.first_origin(resolved) + 1
            got = task.evaluate(best, {"data": _csv(times[cut - context :], values[cut - context :])}, "cpu")
            origins = torch.arange(cut - 1, len(values) - 1)
    y = torch.tensor(values, dtype=torch.float64)
    actual = y[origins[:, None] + torch.arange(1, ds.horizon + 1)]
    naive = metrics.seasonal_naive(y, origins, ds.horizon, ds.period)
    hw = holt_winters.fit(values[:cut], ds.period, times[0])
    assert hw is not None
    hw_forecast = torch.from_numpy(holt_winters.forecasts(hw, values, times[0], origins.tolist(), ds.horizon))
    figures = metrics.figures(model, naive, actual) if ds.horizon == ds.held_out else {
        "rmse": got["rmse"], "mae": got["mae"], **dict(zip(("baseline_mae", "baseline_rmse"),
                                                          metrics.errors(naive, actual), strict=True))}
    figures.update(metrics.holt_winters_figures(hw_forecast, actual))
    return {
        "benchmark": f"quality_forecast/{name}",
        "protocol": "once" if ds.horizon == ds.held_out else "roll",
        "rows": len(values),
        "held_out": ds.held_out,
        "period": ds.period,
        "seed": args.seed,
        **{k: round(v, 4) for k, v in figures.items()},
        "skill_vs_naive": round(metrics.skill(figures["rmse"], figures["baseline_rmse"]), 4),
        "skill_vs_holt_winters": round(metrics.skill(figures["rmse"], figures["holt_winters_rmse"]), 4),
        "holt_winters": f"trend add, season {hw.seasonal or 'none'}",
        # What the job itself reports on its own held-out tail (the last val_fraction of the
        # rows it was given, also its early-stopping data), baselines fitted as in the job.
        "job_heldout": {k: None if summary.get(k) is None else round(summary[k], 4)
                        for k in (*task.FIGURES, "skill", "skill_vs_holt_winters")},
        "choice": summary["choice"],
        "steps": summary["steps"],
        "stopped_by": summary["stopped_by"],
        "cpu_s": round(time.process_time() - cpu, 1),
        "wall_s": round(time.perf_counter() - wall, 1),
        "spec": {k: v for k, v in spec.to_dict().items() if k in {*fields, "hidden", "lr", "lookback", "transform"}},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", nargs="+", choices=[*DATASETS, "all"], default=["all"])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args()
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # devices.configure then uses one thread
    for name in DATASETS if "all" in args.dataset else args.dataset:
        print(json.dumps(run(name, args, overrides)), flush=True)


if __name__ == "__main__":
    main()
