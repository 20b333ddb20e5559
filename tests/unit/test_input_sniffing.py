"""Inputs are read by parsing them: a CSV or TSV as Python's csv module writes it reads
back row for row (quoted texts holding the delimiter included), whatever its name. The
classifier's tables, the forecaster's series and speech manifests share one reader
(rnn_tasks.delimited)."""

from __future__ import annotations

import csv
import gzip
import io
import random

import pytest

from rnn_tasks.classify.table import delimiter_for, read_table
from rnn_tasks.forecast.spec import read_series
from rnn_tasks.spec import SpecError
from rnn_tasks.translate.spec import check_eval_inputs

WORDS = ["good", "bad", "movie", "plot,", "really", "fine;", '"quoted"', "a|b", "tab\there", "ok"]


def _written(rows: list[list[str]], delimiter: str, header: tuple[str, ...] = ("text", "label")) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
@pytest.mark.parametrize("seed", range(40))
def test_files_written_by_the_csv_module_read_back_row_for_row(delimiter: str, seed: int) -> None:
    rng = random.Random(seed)
    rows = [[" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))), rng.choice(["pos", "neg"])]
            for _ in range(rng.randint(2, 40))]
    table = read_table(_written(rows, delimiter), None)
    assert table.delimiter == delimiter
    assert table.rows == [["text", "label"], *rows]


def test_a_file_that_splits_no_way_evenly_is_refused_naming_the_field() -> None:
    with pytest.raises(SpecError, match="cannot tell the delimiter") as err:
        read_table(b"a,b\nc\nd,e,f\n", None, "data")
    assert err.value.field == "data"


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
@pytest.mark.parametrize("seed", range(10))
def test_forecast_series_written_by_the_csv_module_read_back_value_for_value(delimiter: str, seed: int) -> None:
    rng = random.Random(seed)
    values = [float(rng.randint(0, 99)) for _ in range(rng.randint(2, 40))]
    notes = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in values]
    raw = _written([[str(t), note, str(v)] for t, (note, v) in enumerate(zip(notes, values, strict=True))],
                   delimiter, ("time", "note", "value"))
    assert read_series(raw, None, "value", (), None).columns == [values]


def test_a_forecast_tsv_whose_cells_start_with_a_quote_reads_line_per_row() -> None:
    # Quotes are ordinary characters in such a file; reading it with CSV quoting would
    # pair the stray quotes and merge every two rows into one.
    raw = b"time\tnote\tvalue\n" + b"".join(f'{t}\t" odd note {t}\t{2 * t}\n'.encode() for t in range(20))
    series = read_series(raw, None, "value", (), None)
    assert series.times == [str(t) for t in range(20)] and series.columns == [[2.0 * t for t in range(20)]]


def test_forecast_errors_name_the_column_the_value_and_its_line() -> None:
    raw = b'time,note,value\n0,"two\nlines",1\n1,x,2\n2,y,n/a\n'  # the bad row starts on line 5
    with pytest.raises(SpecError, match=r"column 'value', row 3 \(line 5\): 'n/a' is not a number"):
        read_series(raw, None, "value", (), None)
    with pytest.raises(SpecError, match=r"by ',', line 1 has 2 columns but line 4 has 3: '3,4,5'") as err:
        read_series(b"time,value\n1,2\n2,3\n3,4,5\n4,5\n", None, None, (), None)
    assert err.value.field == "DATA" and "give the delimiter" in err.value.message
    series = read_series(b"time,value\n1,2\n2,3\n3,4,5\n", None, None, (), ",")  # given: read as told
    assert series.columns == [[2.0, 3.0, 4.0]]


@pytest.mark.parametrize("name, delimiter", [("x.csv", ","), ("X.CSV", ","), ("x.tsv", "\t"), ("x.tsv.gz", "\t"),
                                             ("x.txt", None), ("csv", None)])
def test_the_name_tells_the_delimiter(name: str, delimiter: str | None) -> None:
    assert delimiter_for(name) == delimiter


def test_translation_pairs_parse_plain_or_gzip() -> None:
    pairs = b"the cat\tle chat\na dog\tun chien\n"
    check_eval_inputs({"data": pairs})
    check_eval_inputs({"data": gzip.compress(pairs)})
    with pytest.raises(SpecError) as err:
        check_eval_inputs({"data": b"the cat\na dog\n"})  # sources alone: the references are missing
    assert err.value.field == "target"
    with pytest.raises(SpecError, match="line 2 has 2 tabs"):
        check_eval_inputs({"data": b"the cat\tle chat\na\tb\tc\n"})
