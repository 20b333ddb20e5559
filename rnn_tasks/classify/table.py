"""Labelled text tables (CSV/TSV) read with the stdlib alone, so the CLI can check them.

    bytes --UTF-8--> text --delimiter (given, from the name .csv/.tsv at training, or
          sniffed from the content: rnn_tasks.delimited)--> rows
          --header (given, or detected)--> column indices --> (texts, labels)
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass

from rnn_tasks import delimited
from rnn_tasks.spec import SpecError

MIN_TRAIN_ROWS = 4  # smallest training split worth a model
MIN_VAL_ROWS = 2  # smallest validation split that can rank checkpoints


@dataclass(frozen=True)
class Table:
    header: list[str] | None  # the first row, when it names the columns
    rows: list[list[str]]  # data rows (blank lines dropped), header excluded
    delimiter: str


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    labels: list[str]
    skipped: int  # rows whose text is empty or only whitespace


def is_index(column: str) -> bool:
    """A column given as a 0-based index ("0", "3") rather than a header name."""
    return column.isdigit()


def delimiter_for(name: str) -> str | None:
    """The delimiter a file's name promises: , for .csv, TAB for .tsv (and .tab); None otherwise."""
    suffixes = [s.lower() for s in name.split("/")[-1].split(".")[1:]]
    if suffixes and suffixes[-1] == "gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    return {"csv": ",", "tsv": "\t", "tab": "\t"}.get(suffix)


def read_table(raw: bytes, delimiter: str | None, field: str = "DATA") -> Table:
    """The rows of a CSV/TSV file; every row is kept (header detection is the caller's)."""
    text = delimited.decode(raw, field)
    if not text.strip():
        raise SpecError(field, "the file is empty")
    delim = delimiter if delimiter is not None else delimited.sniff_delimiter(text, field)
    try:
        rows = [row.cells for row in delimited.read_rows(text, delim)]
    except csv.Error as exc:
        raise SpecError(field, f"not a valid {delimited.name(delim)}-separated file: {exc}") from None
    return Table(header=None, rows=rows, delimiter=delim)


def column_index(table: Table, column: str, field: str) -> int:
    if is_index(column):
        return int(column)
    if table.header is None:
        raise SpecError(field, f"column {column!r} is a name but the file has no header row; give its 0-based index")
    names = [h.strip() for h in table.header]
    if column.strip() not in names:
        shown = ", ".join(repr(n) for n in names[:20])
        raise SpecError(field, f"no column {column!r} in the header ({shown}); for a file without a header row "
                        "give the 0-based column index, e.g. 0")
    return names.index(column.strip())


def with_header(table: Table, header: bool | None, columns: tuple[str, ...], label_column: str | None) -> Table:
    """Split off the header row: as told, else when a column is given by name, else detected.

    Detection (all columns given as indices): the first row is a header when its label
    cell is not a label of any other row, e.g. "label" above rows labelled 0/1 or pos/neg.
    """
    if not table.rows:
        return table
    if header is None:
        if any(not is_index(c) for c in columns):
            header = True
        elif label_column is not None and len(table.rows) > 1:
            li = int(label_column)
            first = table.rows[0][li].strip() if li < len(table.rows[0]) else ""
            header = first not in {r[li].strip() for r in table.rows[1:] if li < len(r)}
        else:
            header = False
    if header:
        return Table(header=table.rows[0], rows=table.rows[1:], delimiter=table.delimiter)
    return table


def labelled_rows(table: Table, text_index: int, label_index: int, text_field: str, label_field: str) -> Labelled:
    texts: list[str] = []
    labels: list[str] = []
    skipped = 0
    first_line = 2 if table.header is not None else 1
    for n, row in enumerate(table.rows):
        for index, field in ((text_index, text_field), (label_index, label_field)):
            if index >= len(row):
                raise SpecError(field, f"row {n + first_line} has {len(row)} column(s), no column {index} "
                                f"(delimiter {delimited.name(table.delimiter)}; give --delimiter if that is wrong)")
        label = row[label_index].strip()
        if not label:
            raise SpecError(label_field, f"row {n + first_line} has an empty label")
        if not row[text_index].strip():
            skipped += 1
            continue
        texts.append(row[text_index])
        labels.append(label)
    return Labelled(texts=texts, labels=labels, skipped=skipped)


def sorted_labels(labels: list[str]) -> list[str]:
    """Distinct labels in class-id order: numerically when all are integers (1 < 2 < 10), else as strings."""
    distinct = set(labels)
    if all(_is_int(x) for x in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def split_indices(labels: list[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified seeded hold-out: about val_fraction of each class, at least one row of it kept for training.

    Row order is shuffled with random.Random(seed) per class, so the split depends only
    on the file, val_fraction and seed.
    """
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(by_class):
        rows = by_class[label]
        rng.shuffle(rows)
        n_val = min(len(rows) - 1, round(len(rows) * val_fraction))
        val.extend(rows[:n_val])
        train.extend(rows[n_val:])
    return sorted(train), sorted(val)


def class_counts(labels: list[str], indices: list[int]) -> Counter[str]:
    return Counter(labels[i] for i in indices)
