"""Delimited text files (CSV, TSV, ; or | separated) read by parsing; stdlib only.

Classification tables, forecast series and speech manifests all come as such files; when
no delimiter is given, all three decide it here, from the content, never from a name
(a .txt may hold TSV; a stored input has no name at all):

    bytes --UTF-8--> text --sniff_delimiter: the candidate under which every row of the
                           head parses to the same number (> 1) of columns--> rows

Two kinds of file are common and both must read correctly:

    text,label                       quoted CSV: a cell may hold the delimiter, quotes
    "Great, really great",pos        or a line break inside "..."

    " I love it.  <TAB>1             line-per-row TSV (e.g. UCI sentiment sentences,
    But "Storm Trooper" is bad<TAB>0 Common Voice): quotes are ordinary characters

A file whose every line has the same number of delimiters is line-per-row; when reading
it with CSV quoting would merge lines (a stray opening quote), it is read without quoting.
"""

from __future__ import annotations

import csv
import io
import re
from typing import NamedTuple

from rnn_tasks.spec import SpecError

DELIMITERS = ",\t;|"  # the candidates, unless a caller names fewer
SNIFF_CHARS = 1 << 20  # head of the file the sniffer parses: plenty of rows, cheap on a big file
_PREFERENCE = "\t,;|"  # among several consistent candidates: tabs are rare inside text, commas common
_LINE_END = re.compile(r"\r\n|\r|\n")  # what the csv module ends a row on (not str.splitlines' extras)


class Row(NamedTuple):
    line: int  # 1-based line of the file the row starts on (a quoted cell may span lines)
    cells: list[str]


def decode(raw: bytes, field: str) -> str:
    """UTF-8 text (a byte-order mark dropped), or SpecError naming the bad byte's line."""
    try:
        return raw.decode("utf-8-sig")  # -sig: drop the byte-order mark some editors write
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(field, f"not UTF-8 text (bad byte at offset {exc.start}, line {line})") from None


def split_lines(text: str) -> list[str]:
    """Lines ended by \\n, \\r\\n or \\r, as the csv module ends rows."""
    return _LINE_END.split(text)


def name(delimiter: str) -> str:
    """How messages show a delimiter: TAB, or the character quoted."""
    return "TAB" if delimiter == "\t" else repr(delimiter)


def sniff_delimiter(text: str, field: str, candidates: str = DELIMITERS, one_column: str | None = None,
                    fix: str = "give the delimiter") -> str:
    """The candidate under which the file *parses* into rows of one width (> 1).

    Each candidate reads the head of the file with the csv module (quoted, as Python's csv
    writer quotes, and unquoted, for line-per-row TSV with stray quotes). Counting
    characters is not enough: a CSV whose quoted texts hold commas has a different count
    per line. Among several consistent candidates, csv.Sniffer's pick wins, else TAB
    before , ; |. A file no candidate splits at all has one column: `one_column` is
    returned for it when given. Otherwise SpecError names the first line that breaks and
    ends with `fix`, what the user can do about it.
    """
    head, truncated = _head(text)
    order = [d for d in _PREFERENCE if d in candidates]
    consistent = [d for d in order if _parses(head, d, truncated)]
    if not consistent:
        if one_column is not None and not any(_widest(head, d) > 1 for d in order):
            return one_column
        raise SpecError(field, _no_delimiter(head, candidates, order, truncated) + f"; {fix}")
    if len(consistent) > 1:
        try:
            sniffed = csv.Sniffer().sniff(head[:65536], delimiters=candidates).delimiter
        except csv.Error:
            sniffed = None
        if sniffed in consistent:
            return sniffed
    return consistent[0]


def sniff_or(text: str, field: str, fallback: str | None) -> str:
    """The content's delimiter (sniff_delimiter); where the content cannot tell, `fallback`
    (for predict and eval files: the delimiter their training file was read with), else
    the SpecError."""
    try:
        return sniff_delimiter(text, field)
    except SpecError:
        if fallback is None:
            raise
        return fallback


def read_rows(text: str, delimiter: str) -> list[Row]:
    """The non-blank rows of text with their line numbers; see the module docstring for
    when quotes quote. csv.Error where a quoted cell never ends."""
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


def _head(text: str) -> tuple[str, bool]:
    """The first SNIFF_CHARS characters cut at a line end, and whether anything was cut."""
    if len(text) <= SNIFF_CHARS:
        return text, False
    cut = max(text.rfind("\n", 0, SNIFF_CHARS), text.rfind("\r", 0, SNIFF_CHARS))
    return (text[: cut + 1] if cut > 0 else text[:SNIFF_CHARS]), True


def _readings(text: str, delimiter: str, truncated: bool) -> list[list[Row]]:
    """The rows of text under delimiter, quoted and unquoted (those that parse at all)."""
    readings = []
    for quoted in (True, False):
        try:
            rows = _rows(text, delimiter, quoted)
        except csv.Error:
            continue
        if truncated and len(rows) > 1:
            rows = rows[:-1]  # a quoted cell may run past the cut
        readings.append(rows)
    return readings


def _parses(text: str, delimiter: str, truncated: bool) -> bool:
    for rows in _readings(text, delimiter, truncated):
        widths = {len(row.cells) for row in rows}
        if len(widths) == 1 and widths.pop() > 1:
            return True
    return False


def _widest(text: str, delimiter: str) -> int:
    """The most columns any row of text has under delimiter (1: it splits nothing)."""
    return max((len(row.cells) for rows in _readings(text, delimiter, False) for row in rows), default=1)


def _no_delimiter(text: str, candidates: str, order: list[str], truncated: bool) -> str:
    shown = " ".join("TAB" if d == "\t" else d for d in candidates)
    return (f"cannot tell the delimiter: no one of {shown} splits every row into the same number of columns"
            f"{_first_break(text, order, truncated)}")


def _first_break(text: str, order: list[str], truncated: bool) -> str:
    """Where the likeliest candidate (the one splitting the first row into the most columns)
    breaks: " (by ',', line 1 has 2 columns but line 7 has 3: 'a,b,c')"; "" if none splits it."""
    best: list[Row] = []
    delimiter = ""
    for candidate in order:
        for rows in _readings(text, candidate, truncated):
            if rows and len(rows[0].cells) > (len(best[0].cells) if best else 1):
                best, delimiter = rows, candidate
    width = len(best[0].cells) if best else 0
    odd = next((row for row in best if len(row.cells) != width), None)
    if odd is None:
        return ""
    return (f" (by {name(delimiter)}, line {best[0].line} has {width} columns but line {odd.line} has "
            f"{len(odd.cells)}: {_clip(odd.cells, delimiter)})")


def _clip(cells: list[str], delimiter: str) -> str:
    line = delimiter.join(cells)
    return repr(line if len(line) <= 60 else line[:57] + "...")


def _rows(text: str, delimiter: str, quoted: bool) -> list[Row]:
    source = io.StringIO(text, newline="")
    if quoted:
        reader = csv.reader(source, delimiter=delimiter)
    else:
        reader = csv.reader(source, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    rows, start = [], 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            rows.append(Row(start, cells))
        start = reader.line_num + 1
    return rows
