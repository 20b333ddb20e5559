"""Inputs are read by parsing them: a CSV or TSV as Python's csv module writes it reads
back row for row (quoted texts holding the delimiter included), whatever its name."""

from __future__ import annotations

import csv
import gzip
import io
import random

import pytest

from rnn_tasks.classify.table import delimiter_for, read_table
from rnn_tasks.spec import SpecError
from rnn_tasks.translate.spec import check_eval_inputs

WORDS = ["good", "bad", "movie", "plot,", "really", "fine;", '"quoted"', "a|b", "tab\there", "ok"]


def _written(rows: list[list[str]], delimiter: str) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(["text", "label"])
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
