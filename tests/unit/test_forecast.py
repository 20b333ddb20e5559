"""The forecast task on tiny generated series: spec, CSV checks, transforms, training, checkpoints."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from rnn_tasks import checkpoint
from rnn_tasks.forecast import data, holt_winters, metrics, select, task
from rnn_tasks.forecast.spec import ForecastSpec, check_inputs, read_series, rows_needed, split_point
from rnn_tasks.loop import Callbacks, StepMetrics
from rnn_tasks.spec import SpecError, train_spec_from_dict

TINY = {"hidden": 16, "batch_size": 16, "warmup_steps": 5, "device": "cpu", "ensemble": 1}


def spec(**fields: Any) -> ForecastSpec:
    return ForecastSpec(data="series", **{**TINY, **fields})


def sine_csv(rows: int = 240, noise: float = 0.1, seed: int = 0, period: int = 12) -> bytes:
    """time,value,aux: a noisy sine on a slow trend, plus an unrelated numeric feature."""
    rng = random.Random(seed)
    lines = ["time,value,aux"]
    for t in range(rows):
        value = 10 + 0.02 * t + 3 * math.sin(2 * math.pi * t / period) + rng.gauss(0, noise)
        lines.append(f"{t},{value:.4f},{rng.random():.3f}")
    return ("\n".join(lines) + "\n").encode()


def seasonal_trend(rows: int = 216, seed: int = 0) -> list[float]:
    """Monthly-like: a steep trend, a 12-step season whose swing grows with the level, noise."""
    rng = random.Random(seed)
    return [(50 + 1.5 * t) * (1 + 0.25 * math.sin(2 * math.pi * t / 12)) + rng.gauss(0, 2) for t in range(rows)]


def values_csv(values: list[float]) -> bytes:
    return ("time,value\n" + "".join(f"{t},{v:.4f}\n" for t, v in enumerate(values))).encode()


def with_rows(raw: bytes, keep: slice) -> bytes:
    lines = raw.decode().splitlines()
    return ("\n".join([lines[0], *lines[1:][keep]]) + "\n").encode()


# --- spec -------------------------------------------------------------------------------------


def test_spec_round_trip_through_the_task_registry() -> None:
    s = train_spec_from_dict({"task": "forecast", "data": "k", "features": ["a", "b"], "horizon": 3, "season": 7})
    assert isinstance(s, ForecastSpec)
    assert s.features == ("a", "b")
    assert ForecastSpec.from_json(s.to_json()) == s


@pytest.mark.parametrize(
    ("fields", "flag"),
    [
        ({"horizon": 0}, "horizon"),
        ({"lookback": 0}, "lookback"),
        ({"season": 0}, "season"),
        ({"transform": "sqrt"}, "transform"),
        ({"transform": "sdiff"}, "transform"),  # needs a season
        ({"features": ["x", "x"]}, "features"),
        ({"target": "x", "features": ["x"]}, "features"),
        ({"delimiter": ";;"}, "delimiter"),
    ],
)
def test_spec_rejects(fields: dict[str, Any], flag: str) -> None:
    with pytest.raises(SpecError) as err:
        spec(**fields)
    assert err.value.field == flag


# --- CSV checks --------------------------------------------------------------------------------


def test_non_numeric_value_names_column_row_and_value() -> None:
    lines = sine_csv(100).decode().splitlines()
    lines[5] = "4,abc,0.5"  # data row 5 (line 6)
    with pytest.raises(SpecError) as err:
        check_inputs(spec(target="value"), {"data": "\n".join(lines).encode()})
    assert err.value.field == "DATA"
    assert "'value'" in err.value.message and "row 5" in err.value.message and "'abc'" in err.value.message


def test_target_defaults_to_the_only_numeric_column_else_ambiguous() -> None:
    raw = b"day;city;temp\n2020-01-02;Oslo;1.5\n2020-01-01;Oslo;2.5\n"
    series = read_series(raw, None, None, (), None)  # ';' detected, rows sorted by date
    assert series.names == ("temp",)
    assert series.times == ["2020-01-01", "2020-01-02"] and series.columns == [[2.5, 1.5]]
    with pytest.raises(SpecError, match="ambiguous") as err:
        read_series(sine_csv(10), None, None, (), None)
    assert err.value.field == "target"
    with pytest.raises(SpecError, match="no column 'nope'"):
        read_series(sine_csv(10), None, "nope", (), None)


def test_unsortable_times_keep_file_order_and_empty_times_are_refused() -> None:
    raw = b"when,v\nlate,1\nearly,2\n"
    assert read_series(raw, None, None, (), None).columns == [[1.0, 2.0]]
    with pytest.raises(SpecError, match="row 2 .* is empty"):
        read_series(b"when,v\na,1\n,2\n", None, None, (), None)
    with pytest.raises(SpecError, match="UTF-8"):
        read_series(b"t,v\n1,\xff\n", None, None, (), None)


def test_too_few_rows_says_how_many_are_needed() -> None:
    s = spec(target="value", lookback=10, horizon=4, val_fraction=0.2)
    total, train = rows_needed(s)
    assert split_point(total, 0.2) >= train == 14 and int(total * 0.2) >= 4
    check_inputs(s, {"data": sine_csv(total)})
    with pytest.raises(SpecError, match=f"need at least {total} rows"):
        check_inputs(s, {"data": sine_csv(total - 1)})


def test_log_transform_needs_positive_values() -> None:
    with pytest.raises(SpecError) as err:
        check_inputs(spec(transform="log", target="value"), {"data": b"t,value\n" + b"1,0\n" * 60})
    assert err.value.field == "transform"


# --- transforms and baseline -------------------------------------------------------------------


@pytest.mark.parametrize("transform", ["none", "log", "diff", "log_diff", "sdiff", "log_sdiff"])
def test_invert_undoes_the_transform(transform: str) -> None:
    # Feeding the true normalised targets through invert() must give back the observed values,
    # including sdiff steps beyond the season (built on earlier forecasts).
    s = spec(transform=transform, season=4, horizon=7, lookback=5, target="value")
    series = read_series(sine_csv(60), None, "value", (), None)
    norm = data.Normaliser.fit(s, series, 48)
    prepared = data.prepare(s, series, norm, torch.device("cpu"))
    origins = data.heldout_origins(s, 0, len(series))
    _, targets = data.batch(s, prepared, origins)
    got = data.invert(s, norm, prepared, origins, targets.double())
    torch.testing.assert_close(got, data.actual(s, prepared, origins), rtol=1e-5, atol=1e-4)


def test_seasonal_naive_repeats_the_last_season() -> None:
    y = torch.arange(10.0)
    assert metrics.seasonal_naive(y, torch.tensor([5]), 5, 3).tolist() == [[3, 4, 5, 3, 4]]
    assert metrics.seasonal_naive(y, torch.tensor([5, 6]), 2, 1).tolist() == [[5, 5], [6, 6]]


# --- training, checkpoints ---------------------------------------------------------------------


def test_loss_falls_and_beats_persistence_on_a_noisy_sine(tmp_path: Path) -> None:
    reports: list[StepMetrics] = []
    s = spec(target="value", lookback=12, horizon=3, max_steps=150, eval_every=10, patience=None, lr=1e-2,
             transform="none")
    summary = task.train(s, {"data": sine_csv()}, Callbacks(on_step=reports.append), tmp_path, None)
    val = [r.val_loss for r in reports if r.val_loss is not None]
    assert min(val) < 0.5 * val[0]
    assert summary["rmse"] < summary["baseline_rmse"] and summary["skill"] > 0
    assert summary["skill"] == pytest.approx(1 - summary["rmse"] / summary["baseline_rmse"])
    assert {"mae", "baseline_mae", "val_loss", "steps"} <= summary.keys()


def _trained_normaliser(raw: bytes, ckpt_dir: Path, s: ForecastSpec) -> list[list[float]]:
    task.train(s, {"data": raw}, None, ckpt_dir, None)
    norm = checkpoint.read(ckpt_dir / "best.safetensors").meta["normaliser"]
    return [norm["mean"], norm["std"]]


def test_normaliser_is_fitted_on_training_rows_only(tmp_path: Path) -> None:
    s = spec(target="value", features=("aux",), max_steps=2, eval_every=1, transform="none")
    raw = sine_csv(100)
    split = split_point(100, s.val_fraction)
    wild = raw.decode().splitlines()
    wild[1 + split :] = [f"{t},{1e6 * (t % 3)},{-5e5}" for t in range(split, 100)]
    first = _trained_normaliser(raw, tmp_path / "a", s)
    second = _trained_normaliser(("\n".join(wild) + "\n").encode(), tmp_path / "b", s)
    assert first == second
    train_values = read_series(raw, None, "value", (), None).columns[0][:split]
    assert first[0][0] == pytest.approx(sum(train_values) / split)


def test_predict_and_evaluate_round_trip_through_the_checkpoint(tmp_path: Path) -> None:
    s = spec(target="value", features=("aux",), horizon=6, lookback=8, season=4, transform="sdiff",
             max_steps=20, eval_every=10)
    raw = sine_csv(120, period=4)
    summary = task.train(s, {"data": raw}, None, tmp_path, None)
    best = tmp_path / "best.safetensors"

    shuffled = raw.decode().splitlines()
    shuffled[1:] = reversed(shuffled[1:])  # numeric times: read back in time order
    out = task.predict(best, ("\n".join(shuffled) + "\n").encode(), {}, "cpu")
    assert out["horizon"] == 6 and len(out["forecast"]) == 6 and out["target"] == "value" and out["after"] == "119"
    assert all(math.isfinite(v) for v in out["forecast"])

    # The held-out tail with just enough history before it reproduces the training figures.
    split = split_point(120, s.val_fraction)
    tail = with_rows(raw, slice(split - data.first_origin(s) - 1, None))
    got = task.evaluate(best, {"data": tail}, "cpu")
    assert got["windows"] == 120 - split - s.horizon + 1
    for key in ("mae", "rmse", "baseline_mae", "baseline_rmse"):
        assert got[key] == pytest.approx(summary[key], rel=1e-4)

    with pytest.raises(SpecError, match="too few"):
        task.predict(best, with_rows(raw, slice(0, 5)), {}, "cpu")


# --- transform auto, Holt-Winters -------------------------------------------------------------


def test_season_is_detected_from_the_autocorrelation() -> None:
    assert select.detect_season(seasonal_trend()) == 12  # not 24 or 36, its multiples
    weekly = [0.1 * t + 2 * math.sin(2 * math.pi * t / 7) + random.Random(t).gauss(0, 0.3) for t in range(300)]
    assert select.detect_season(weekly) == 7
    rng = random.Random(1)
    assert select.detect_season([rng.gauss(0, 1) for _ in range(300)]) is None  # white noise
    walk = [0.0]
    for _ in range(300):
        walk.append(walk[-1] + rng.gauss(0, 1))
    assert select.detect_season(walk) is None  # a random walk has no season


AUTO = {"target": "value", "horizon": 12, "max_steps": 120, "eval_every": 20, "lr": 1e-2}


def test_auto_picks_a_season_and_transform_that_beat_seasonal_naive(tmp_path: Path) -> None:
    summary = task.train(spec(**AUTO), {"data": values_csv(seasonal_trend())}, None, tmp_path, None)
    choice = summary["choice"]
    assert choice["season"] == summary["season"] == 12 and choice["season_from"] == "autocorrelation"
    assert set(choice["validation_rmse"]) == {"diff", "log_diff", "sdiff", "log_sdiff"}  # differencing, with a season
    assert summary["transform"] == min(choice["validation_rmse"], key=choice["validation_rmse"].get)
    assert summary["rmse"] < summary["baseline_rmse"]  # beats seasonal naive (season 12) on the held-out tail
    saved = checkpoint.read(tmp_path / "best.safetensors")
    assert saved.spec["transform"] == summary["transform"] and saved.meta["choice"] == choice


def test_auto_never_reads_the_held_out_tail(tmp_path: Path) -> None:
    values = seasonal_trend()
    split = split_point(len(values), 0.2)
    wild = values[:split] + [v * 10 + 5000 * (t % 2) for t, v in enumerate(values[split:])]
    fields = {**AUTO, "max_steps": 40}
    first = task.train(spec(**fields), {"data": values_csv(values)}, None, tmp_path / "a", None)
    second = task.train(spec(**fields), {"data": values_csv(wild)}, None, tmp_path / "b", None)
    assert first["choice"] == second["choice"]  # the same scores to the last digit
    assert first["rmse"] != second["rmse"]  # while the held-out figures did see the change


def test_transform_auto_respects_a_given_season_and_positive_only_logs() -> None:
    values = [v - 200 for v in seasonal_trend(120)]  # negative early on: no log transform
    series = read_series(values_csv(values), None, "value", (), None)
    seen: list[tuple[str, int | None]] = []

    def score(cand: ForecastSpec, part: Any, inner: int) -> float:
        assert len(part) == 96 and inner == 96 - 19  # the training part, less its last fifth
        seen.append((cand.transform, cand.season))
        return {"sdiff": 1.0}.get(cand.transform, 2.0)

    choice = select.choose(spec(target="value", horizon=6, season=4), series, 96, score)
    assert seen == [("diff", 4), ("sdiff", 4)]
    assert choice.spec.transform == "sdiff" and choice.season_from == "given"

    seen.clear()
    rng = random.Random(3)
    walk = [100.0]
    for _ in range(119):
        walk.append(walk[-1] + rng.gauss(0, 1))  # no season: levels are candidates too
    choice = select.choose(spec(target="value", horizon=6), read_series(values_csv(walk), None, "value", (), None),
                           96, score)
    assert seen == [("none", None), ("log", None), ("diff", None), ("log_diff", None)]
    assert choice.season_from == "none found" and choice.spec.transform == "none"  # ties: the first


@pytest.mark.parametrize("seasonal_values", [True, False])
def test_holt_winters_matches_statsmodels_and_runs_on_with_fixed_parameters(seasonal_values: bool) -> None:
    import numpy as np
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    values = seasonal_trend(120) if seasonal_values else [v - 300 for v in seasonal_trend(120)]
    hw = holt_winters.fit(values[:96], 12, "0")
    assert hw is not None and hw.seasonal in (("add", "mul") if seasonal_values else ("add",))  # mul needs y > 0
    ref = ExponentialSmoothing(np.asarray(values[:96]), trend="add", seasonal=hw.seasonal, seasonal_periods=12,
                               initialization_method="estimated").fit()
    ours = holt_winters.forecasts(hw, values, "0", [95, 100], 30)
    np.testing.assert_allclose(ours[0], ref.forecast(30), rtol=1e-9)  # the end of the training part
    one_step = holt_winters.forecasts(hw, values[:96], "0", list(range(95)), 1)[:, 0]
    np.testing.assert_allclose(one_step, ref.fittedvalues[1:], rtol=1e-9)  # every step inside it
    assert not np.allclose(ours[1], ours[0])  # later origins read the later observations


def test_eval_and_predict_show_seasonal_naive_and_holt_winters(tmp_path: Path) -> None:
    raw = values_csv(seasonal_trend(120))
    s = spec(target="value", horizon=6, season=12, transform="log_sdiff", max_steps=20, eval_every=10)
    summary = task.train(s, {"data": raw}, None, tmp_path, None)
    best = tmp_path / "best.safetensors"
    assert summary["holt_winters_rmse"] > 0
    assert summary["skill_vs_holt_winters"] == pytest.approx(1 - summary["rmse"] / summary["holt_winters_rmse"])

    out = task.predict(best, raw, {}, "cpu")
    assert len(out["holt_winters_forecast"]) == len(out["seasonal_naive_forecast"]) == 6
    values = read_series(raw, None, "value", (), None).columns[0]
    assert out["seasonal_naive_forecast"] == values[-12:-6]
    assert out["heldout"]["holt_winters_rmse"] == pytest.approx(summary["holt_winters_rmse"])
    assert out["heldout"]["rmse"] == pytest.approx(summary["rmse"])

    got = task.evaluate(best, {"data": raw}, "cpu")
    assert {"rmse", "baseline_rmse", "holt_winters_rmse", "holt_winters_mae", "skill_vs_holt_winters"} <= got.keys()
    assert got["transform"] == "log_sdiff" and got["season"] == 12


def test_a_resumed_job_keeps_its_choice_without_choosing_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = values_csv(seasonal_trend(120))
    first = task.train(spec(**{**AUTO, "max_steps": 10, "eval_every": 5}), {"data": raw}, None, tmp_path, None)

    def refuse(*args: Any) -> None:
        raise AssertionError("a resumed job must not choose again")

    monkeypatch.setattr(select, "choose", refuse)
    resumed = task.train(spec(**{**AUTO, "max_steps": 20, "eval_every": 5}), {"data": raw}, None, tmp_path,
                         tmp_path / "last.safetensors")
    assert resumed["steps"] == 20 and resumed["choice"] == first["choice"]
    assert resumed["transform"] == first["transform"]
