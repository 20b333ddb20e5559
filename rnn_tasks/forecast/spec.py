"""The forecast job: its spec, the CSV reader and submit-time checks. Stdlib only.

The CLI validates a forecast job here without importing torch, and the worker reads the
series with the same `read_series`, so a file that passes check_inputs trains.

    time   target  feature...      one row per step, in time order (sorted by the time
    1949-01  112     ...           column when it parses as ISO dates or numbers)
    ...
    |------- training part -------|-- held out: the last val_fraction --|
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from rnn_tasks import delimited
from rnn_tasks.spec import SpecError, TrainedModel, TrainSpec, _between

# How the target is rewritten before normalisation (features are only normalised):
#   log     log(y), for series whose swings grow with their level (needs y > 0)
#   diff    y[t] - y[t-1], removes a trend; the model forecasts the steps
#   sdiff   y[t] - y[t-season], removes a trend and a seasonal pattern
# log_diff and log_sdiff take the log first. Forecasts are turned back into the target's
# units (cumulated, exponentiated) before any error is measured.
#   auto    (the default) train() picks one of the above, and the season when none is
#           given, by validation on the training part only (rnn_tasks.forecast.select)
TRANSFORMS = ("none", "log", "diff", "log_diff", "sdiff", "log_sdiff")
AUTO = "auto"
_YEAR_MONTH = re.compile(r"^\d{4}-\d{2}$")


@dataclass(frozen=True)
class ForecastSpec(TrainSpec):
    """Forecast the next `horizon` values of one numeric CSV column from the last `lookback` rows.

    Defaults suit short series (tens to thousands of rows): a small GRU trained for a
    fixed number of steps with frequent evaluation, since one epoch is only a few batches.
    """

    TASK: ClassVar[str] = "forecast"
    PREDICT_FROM_TRAINING_DATA: ClassVar[bool] = True  # the forecast after the series it was trained on

    task: str = "forecast"
    hidden: int = 64  # small series overfit a wide state
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 20
    max_steps: int | None = 1000  # an epoch of a 144-row series is ~3 batches, so count steps
    eval_every: int = 25
    patience: int | None = 10
    val_fraction: float = 0.2
    time_column: str | None = None  # column of the time stamps; None = the first column
    target: str | None = None  # column to forecast; None = the only numeric column besides time and features
    features: tuple[str, ...] = ()  # extra numeric columns fed to the model as inputs (not forecast)
    horizon: int = 1  # steps forecast at once, by one linear head (direct multi-step)
    lookback: int = 24  # steps of history the model reads
    season: int | None = None  # seasonal period (12 for monthly data); None = auto: detected from the training
    # part's autocorrelation when transform is auto, else 1 (the persistence baseline)
    transform: str = AUTO  # auto | none | log | diff | log_diff | sdiff | log_sdiff (see TRANSFORMS)
    delimiter: str | None = None  # CSV delimiter; None = detect among , ; tab |
    ensemble: int = 3  # networks averaged (different initial weights); 3 cost 3x a tiny model's time

    def __post_init__(self) -> None:
        if isinstance(self.features, list):  # JSON gives a list
            object.__setattr__(self, "features", tuple(self.features))
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        _between("horizon", self.horizon, 1, 100_000)
        _between("lookback", self.lookback, 1, 100_000)
        _between("season", self.season, 1, 100_000)
        _between("ensemble", self.ensemble, 1, 100)
        if self.transform not in (AUTO, *TRANSFORMS):
            raise SpecError("transform", f"must be one of {AUTO}, {', '.join(TRANSFORMS)}, got {self.transform!r}")
        if self.transform.endswith("sdiff") and self.season is None:
            raise SpecError("transform", f"{self.transform} differences over the season: set season too")
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in "\r\n\"'"):
            raise SpecError("delimiter", f"must be one character other than a quote or newline, got {self.delimiter!r}")
        names = [n for n in (self.time_column, self.target) if n is not None]
        for name in self.features:
            if not name:
                raise SpecError("features", "column names must not be empty")
            if name in names:
                raise SpecError("features", f"column {name!r} is named twice (as time, target or another feature)")
            names.append(name)
        if self.time_column is not None and self.time_column == self.target:
            raise SpecError("target", f"column {self.target!r} is also the time column")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["features"] = list(self.features)
        return data

    @property
    def lag(self) -> int:
        """Rows the transform consumes before its first value (0, 1 or season; 0 for auto, which
        only considers transforms the series has rows for)."""
        if self.transform.endswith("sdiff"):
            return self.season or 1
        return 1 if self.transform.endswith("diff") else 0


@dataclass(frozen=True)
class Series:
    """A parsed CSV series in time order. columns[0] is the target, then the features."""

    time_column: str
    names: tuple[str, ...]  # (target, *features)
    times: list[str]
    columns: list[list[float]]

    def __len__(self) -> int:
        return len(self.times)


def split_point(rows: int, val_fraction: float) -> int:
    """Index of the first held-out row: the last val_fraction of the series is held out."""
    return rows - int(rows * val_fraction)


def rows_needed(spec: ForecastSpec) -> tuple[int, int]:
    """(total rows, training rows) for one training window and one held-out window.

    Training windows need lag + lookback + horizon rows (the transform eats `lag`); the
    held-out tail needs `horizon` rows (its windows read training rows as history); the
    seasonal-naive baseline needs a season of history before the first held-out target.
    """
    train = max(spec.lag + spec.lookback + spec.horizon, spec.season or 1)
    total = train + spec.horizon
    while int(total * spec.val_fraction) < spec.horizon or split_point(total, spec.val_fraction) < train:
        total += 1
    return total, train


def first_origin(spec: ForecastSpec) -> int:
    """The earliest origin whose input window lies past the transform's lag."""
    return spec.lag + spec.lookback - 1


def read_new_series(spec: ForecastSpec, columns: dict[str, Any], raw: bytes) -> Series:
    """A new CSV for predict or eval, read with the columns the model was trained on
    (`columns`: time_column, target, features). Its delimiter comes from its content: the
    spec's may have come from the training file's name (sales.csv), which says nothing
    about this file; it is used only where the content cannot tell."""
    delimiter = delimited.sniff_or(delimited.decode(raw, "DATA"), "DATA", spec.delimiter)
    series = read_series(raw, columns["time_column"], columns["target"], tuple(columns["features"]), delimiter)
    check_transform(spec, series)
    return series


def check_new_rows(spec: ForecastSpec, rows: int, purpose: str) -> None:
    """Enough rows to forecast after (predict) or for one rolling window (eval)."""
    if purpose == "predict":
        need = first_origin(spec) + 1
        if rows < need:
            raise SpecError("DATA", f"{rows} rows is too few: the model reads {spec.lookback} rows"
                            f"{f' after {spec.lag} for transform {spec.transform}' if spec.lag else ''}; give {need}")
        return
    need = max(first_origin(spec), (spec.season or 1) - 1) + 1 + spec.horizon
    if rows < need:
        raise SpecError("DATA", f"{rows} rows is too few for one window: give at least {need}")


def check_inference_input(raw: bytes, model: TrainedModel, purpose: str, options: dict[str, Any]) -> None:
    """Submit-time check of predict's input or eval's data, read as the worker will read it:
    the trained columns and the transform and season training chose (a model trained before
    results carried its columns is checked by the worker)."""
    result = model.result
    if "time_column" not in result or result.get("transform") in (None, AUTO):
        return
    spec = replace(ForecastSpec.from_dict(model.spec), transform=result["transform"], season=result.get("season"))
    check_new_rows(spec, len(read_new_series(spec, result, raw)), purpose)


def check_inputs(spec: ForecastSpec, files: dict[str, bytes]) -> None:
    """Submit-time checks of the CSV; raises SpecError naming the flag or "DATA"."""
    check_series(spec, read_series(files["data"], spec.time_column, spec.target, spec.features, spec.delimiter))


def check_series(spec: ForecastSpec, series: Series) -> None:
    """The parsed series suits the transform and has rows for a training and a held-out window."""
    check_transform(spec, series)
    total, train = rows_needed(spec)
    if len(series) < total:
        raise SpecError("DATA", f"{len(series)} rows is too few: lookback {spec.lookback} + horizon {spec.horizon}"
                        f"{_lag_note(spec)} need at least {total} rows ({train} for training and "
                        f"{total - split_point(total, spec.val_fraction)} held out with val_fraction "
                        f"{spec.val_fraction:g})")


def check_transform(spec: ForecastSpec, series: Series) -> None:
    if spec.transform.startswith("log"):
        for time, value in zip(series.times, series.columns[0], strict=True):
            if value <= 0:
                raise SpecError("transform", f"{spec.transform} needs positive values, but column "
                                f"{series.names[0]!r} has {value:g} at {series.time_column} {time}")


def _lag_note(spec: ForecastSpec) -> str:
    return f" (+{spec.lag} rows for transform {spec.transform})" if spec.lag else ""


def read_series(raw: bytes, time_column: str | None, target: str | None, features: tuple[str, ...] | list[str],
                delimiter: str | None) -> Series:
    """Parse a CSV with a header; every target/feature value must be a finite number.
    Without a delimiter the content tells it (rnn_tasks.delimited)."""
    text = delimited.decode(raw, "DATA")
    if not text.strip():
        raise SpecError("DATA", "empty file: expected a header row naming the columns")
    delimiter = delimiter or delimited.sniff_delimiter(text, "DATA")
    try:
        header_row, *rows = delimited.read_rows(text, delimiter)
    except csv.Error as exc:
        raise SpecError("DATA", f"not a valid {delimited.name(delimiter)}-separated file: {exc}") from None
    header = [h.strip() for h in header_row.cells]
    if not rows:
        raise SpecError("DATA", "no data rows after the header")
    time_name = time_column if time_column is not None else header[0]
    named = [("time_column", time_name), ("target", target), *(("features", f) for f in features)]
    for flag, name in named:
        if name is not None and name not in header:
            raise SpecError(flag, f"no column {name!r} in the header (columns: {', '.join(header)})")
    if target == time_name or time_name in features:
        raise SpecError("time_column", f"column {time_name!r} is the time column; it cannot be forecast or a feature")
    if target is None:
        target = _only_numeric(header, rows, {time_name, *features})
    names = (target, *features)
    columns = [_numbers(name, header.index(name), rows) for name in names]
    times = _times(time_name, header.index(time_name), rows)
    order = _time_order(times)
    return Series(time_name, names, [times[i] for i in order], [[col[i] for i in order] for col in columns])


def _cell(row: list[str], index: int) -> str | None:
    return row[index].strip() if index < len(row) else None


def _numbers(name: str, index: int, rows: list[delimited.Row]) -> list[float]:
    out = []
    for row_no, (line, row) in enumerate(rows, 1):
        value = _cell(row, index)
        if value is None:
            raise SpecError("DATA", f"row {row_no} (line {line}) has {len(row)} cells, too few for column {name!r}")
        try:
            number = float(value)
        except ValueError:
            raise SpecError("DATA", f"column {name!r}, row {row_no} (line {line}): {value!r} is not a number") from None
        if not math.isfinite(number):
            raise SpecError("DATA", f"column {name!r}, row {row_no} (line {line}): {value!r} is not a finite number")
        out.append(number)
    return out


def _times(name: str, index: int, rows: list[delimited.Row]) -> list[str]:
    out = []
    for row_no, (line, row) in enumerate(rows, 1):
        value = _cell(row, index)
        if not value:
            raise SpecError("DATA", f"time column {name!r}, row {row_no} (line {line}) is empty")
        out.append(value)
    return out


def _only_numeric(header: list[str], rows: list[delimited.Row], taken: set[str]) -> str:
    numeric = [name for i, name in enumerate(header)
               if name not in taken and all(_is_number(_cell(row.cells, i)) for row in rows)]
    if len(numeric) == 1:
        return numeric[0]
    if not numeric:
        raise SpecError("target", "no numeric column to forecast besides the time column and features; "
                        "name one")
    raise SpecError("target", f"ambiguous: columns {', '.join(map(repr, numeric))} are all numeric; "
                    "choose one")


def _is_number(value: str | None) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except ValueError:
        return False


def _time_order(times: list[str]) -> list[int]:
    """Row indices sorted by time when every stamp parses as a number or ISO date; else file order."""
    keys: list[Any] | None = None
    if all(_is_number(t) for t in times):
        keys = [float(t) for t in times]
    else:
        try:
            keys = [datetime.fromisoformat(t + "-01" if _YEAR_MONTH.match(t) else t) for t in times]
        except ValueError:
            keys = None
    if keys is None:
        return list(range(len(times)))
    try:
        return sorted(range(len(times)), key=keys.__getitem__)  # stable: equal stamps keep file order
    except TypeError:  # naive and timezone-aware stamps mixed
        return list(range(len(times)))
