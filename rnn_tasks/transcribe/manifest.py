"""Finding the utterances of a speech corpus on disk; stdlib only (the CLI uses it).

Three layouts, the ones corpus exports come in:

    corpus.csv / .tsv     audio path and transcript per row, paths relative to the file;
                          a header names the columns (Common Voice: path, sentence;
                          DeepSpeech: wav_filename, transcript) or the first two are used;
                          comma or TAB, whichever the content parses by (not the name)
    NAME.trans.txt        LibriSpeech: "UTTERANCE-ID transcript" lines, audio ID.flac beside it
    a folder              name.wav (.flac, .ogg) with its transcript in name.txt

For predict, a manifest's transcript column is optional and plain audio files may be
given directly.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from rnn_tasks import delimited
from rnn_tasks.spec import SpecError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")
AUDIO_COLUMNS = ("path", "audio", "audio_path", "file", "filename", "file_name", "wav", "wav_filename")
MANIFEST_DELIMITERS = ",\t"  # CSV or TSV, as corpus exports come
TEXT_COLUMNS = ("sentence", "transcript", "transcription", "text", "normalized_text", "label")


class Entry(NamedTuple):
    path: Path  # the audio file
    name: str  # as the manifest wrote it
    transcript: str | None  # None: the layout gives none (predict)
    where: str  # for messages: "corpus.csv line 7", "a.txt"


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def collect(path: Path, field: str, transcripts: bool = True) -> list[Entry]:
    """The utterances under `path` (see the module docstring); SpecError names the file at fault.
    With transcripts=True every utterance must come with one."""
    if not path.exists():
        raise SpecError(field, f"{path} does not exist")
    if path.is_dir():
        entries = _folder(path, field, transcripts)
    elif is_audio(path):
        if transcripts:
            raise SpecError(field, f"{path} is a single recording; give a manifest (CSV/TSV) or a folder of "
                                   "name.wav + name.txt")
        entries = [Entry(path, path.name, None, path.name)]
    elif path.name.endswith(".trans.txt"):
        entries = _librispeech(path, field)
    else:
        entries = _table(path, field, transcripts)
    if not entries:
        raise SpecError(field, f"{path} lists no audio")
    return entries


def _folder(path: Path, field: str, transcripts: bool) -> list[Entry]:
    entries = []
    for audio in sorted(p for p in path.iterdir() if p.is_file() and is_audio(p)):
        text_file = audio.with_suffix(".txt")
        if text_file.is_file():
            text: str | None = _read_text(text_file, field).strip()
        elif transcripts:
            raise SpecError(field, f"{audio} has no transcript {text_file.name} beside it")
        else:
            text = None
        entries.append(Entry(audio, audio.name, text, text_file.name))
    return entries


def _librispeech(path: Path, field: str) -> list[Entry]:
    entries = []
    for number, line in enumerate(_read_text(path, field).splitlines(), 1):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        entries.append(Entry(path.parent / f"{utt}.flac", f"{utt}.flac", text, f"{path.name} line {number}"))
    return entries


def _table(path: Path, field: str, transcripts: bool) -> list[Entry]:
    rows = _rows(path, field)
    header = [c.strip().lower() for c in rows[0].cells]
    audio_col = next((header.index(c) for c in AUDIO_COLUMNS if c in header), None)
    text_col = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
    start = 1 if audio_col is not None or text_col is not None else 0
    if start and audio_col is None:
        raise SpecError(field, f"{path}: no audio column in the header (one of {', '.join(AUDIO_COLUMNS)})")
    audio_col = 0 if audio_col is None else audio_col
    if text_col is None and not start:
        text_col = 1 if len(rows[0].cells) > 1 else None
    if text_col is None and transcripts:
        raise SpecError(field, f"{path}: no transcript column (one of {', '.join(TEXT_COLUMNS)}, or the second)")
    entries = []
    for line, row in rows[start:]:
        where = f"{path.name} line {line}"
        if audio_col >= len(row) or (text_col is not None and text_col >= len(row)):
            raise SpecError(field, f"{where} has {len(row)} column(s)")
        name = row[audio_col].strip()
        entries.append(Entry(path.parent / name, name, None if text_col is None else row[text_col], where))
    return entries


def _rows(path: Path, field: str) -> list[delimited.Row]:
    """The manifest's rows, split by comma or TAB as its content parses (a transcript may hold
    commas inside quotes). A file of one column is a list of audio paths (for predict)."""
    text = _read_text(path, field)
    try:
        delimiter = delimited.sniff_delimiter(text, field, MANIFEST_DELIMITERS, one_column=",",
                                              fix="quote the cells that hold a comma (as the csv module writes them)")
    except SpecError as exc:
        raise SpecError(field, f"{path}: {exc.message}") from None
    try:
        rows = delimited.read_rows(text, delimiter)
    except csv.Error as exc:
        raise SpecError(field, f"{path} is not a valid {delimited.name(delimiter)}-separated file: {exc}") from None
    if not rows:
        raise SpecError(field, f"{path} is empty")
    return rows


def _read_text(path: Path, field: str) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(field, f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SpecError(field, f"{path} cannot be read: {exc.strerror}") from None
