"""Labelled text tables (CSV/TSV) read with the stdlib alone, so the CLI can check them.

    bytes --UTF-8--> text --delimiter (given, from the name .csv/.tsv, or sniffed)--> rows
          --header (given, or detected)--> column indices --> (texts, labels)

Two kinds of file are common and both must read correctly:

    text,label                       quoted CSV: a text may hold the delimiter, quotes
    "Great, really great",pos        or a line break inside "..."

    " I love it.  <TAB>1             line-per-row TSV (e.g. UCI sentiment sentences):
    But "Storm Trooper" is bad<TAB>0 quotes are ordinary characters, never quoting

A file whose every line has the same number of delimiters is line-per-row; when reading
it with CSV quoting would merge lines (a stray opening quote), it is read without quoting.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections import Counter
from dataclasses import dataclass

from rnn_tasks.spec import SpecError

DELIMITERS = ",\t;|"
MIN_TRAIN_ROWS = 4  # smallest training split worth a model
MIN_VAL_ROWS = 2  # smallest validation split that can rank checkpoints
_LINE_END = re.compile(r"\r\n|\r|\n")  # what the csv module ends a row on (not str.splitlines' extras)


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


def decode(raw: bytes, field: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # -sig: drop the byte-order mark some editors write
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(field, f"not UTF-8 text (bad byte at offset {exc.start}, line {line})") from None


def split_lines(text: str) -> list[str]:
    """Lines ended by \\n, \\r\\n or \\r, as the csv module ends rows."""
    return _LINE_END.split(text)


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


def sniff_delimiter(text: str, field: str) -> str:
    """The delimiter among , TAB ; | under which the file *parses* into rows of one width.

    Each candidate reads the head of the file with the csv module (quoted, as Python's csv
    writer quotes, and unquoted, for line-per-row TSV with stray quotes); a candidate is
    consistent when every row has the same number (> 1) of columns. Counting characters
    is not enough: a CSV whose quoted texts hold commas has a different count per line.
    Among several consistent candidates, csv.Sniffer's pick wins, else TAB before , ; |
    (tabs are rare inside text, commas common).
    """
    head, truncated = _head(text)
    consistent = [d for d in _PREFERENCE if _parses(head, d, truncated)]
    if not consistent:
        raise SpecError(field, "cannot tell the delimiter: no one of , TAB ; | splits every row into the same "
                               "number of columns; give the delimiter")
    if len(consistent) > 1:
        try:
            sniffed = csv.Sniffer().sniff(head[:65536], delimiters=DELIMITERS).delimiter
        except csv.Error:
            sniffed = None
        if sniffed in consistent:
            return sniffed
    return consistent[0]


_PREFERENCE = "\t,;|"
SNIFF_BYTES = 1 << 20  # head of the file the sniffer parses: plenty of rows, cheap on a big file


def _head(text: str) -> tuple[str, bool]:
    """The first SNIFF_BYTES characters cut at a line end, and whether anything was cut."""
    if len(text) <= SNIFF_BYTES:
        return text, False
    cut = max(text.rfind("\n", 0, SNIFF_BYTES), text.rfind("\r", 0, SNIFF_BYTES))
    return (text[: cut + 1] if cut > 0 else text[:SNIFF_BYTES]), True


def _parses(text: str, delimiter: str, truncated: bool) -> bool:
    for quoted in (True, False):
        try:
            rows = _rows(text, delimiter, quoted)
        except csv.Error:
            continue
        if truncated and len(rows) > 1:
            rows = rows[:-1]  # a quoted text may run past the cut
        widths = {len(row) for row in rows}
        if len(widths) == 1 and widths.pop() > 1:
            return True
    return False


def parse_rows(text: str, delimiter: str) -> list[list[str]]:
    """Rows of text, blank lines dropped; see the module docstring for the quoting rule."""
    lines = [line for line in _LINE_END.split(text) if line.strip()]
    line_per_row = len({line.count(delimiter) for line in lines}) == 1
    try:
        rows = _rows(text, delimiter, quoted=True)
        if not line_per_row or len(rows) == len(lines):
            return rows
    except csv.Error:  # e.g. a stray quote swallowed the file past the field size limit
        if not line_per_row:
            raise
    return _rows(text, delimiter, quoted=False)


def _rows(text: str, delimiter: str, quoted: bool) -> list[list[str]]:
    source = io.StringIO(text, newline="")
    if quoted:
        reader = csv.reader(source, delimiter=delimiter)
    else:
        reader = csv.reader(source, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    return [row for row in reader if any(cell.strip() for cell in row)]


def read_table(raw: bytes, delimiter: str | None, field: str = "DATA") -> Table:
    """The rows of a CSV/TSV file; every row is kept (header detection is the caller's)."""
    text = decode(raw, field)
    if not text.strip():
        raise SpecError(field, "the file is empty")
    delim = delimiter if delimiter is not None else sniff_delimiter(text, field)
    try:
        rows = parse_rows(text, delim)
    except csv.Error as exc:
        raise SpecError(field, f"not a valid {_name(delim)}-separated file: {exc}") from None
    return Table(header=None, rows=rows, delimiter=delim)


def _name(delimiter: str) -> str:
    return "TAB" if delimiter == "\t" else repr(delimiter)


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
                                f"(delimiter {_name(table.delimiter)}; give --delimiter if that is wrong)")
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
