"""Cutting a corpus without copying it: where the held-out part starts, and chunks that
no token crosses, so a corpus can be fitted, encoded and counted a piece at a time.

Stdlib only: the CLI uses it to count tokens at submit time without importing torch.

A chunk ends just before a space or newline that is followed by a letter or digit, or
between a letter or digit and a punctuation mark:

    ... the cat sat. The dog ran ...     ... 日本語の文章、句読点 ...
                    ^ " The" starts               ^ "、" starts

Word tokens (\\w+ runs and single punctuation marks) never contain whitespace, so any
whitespace is a safe cut for them. Byte-level BPE pre-tokenizes with GPT-2's pattern,
where a space sticks to the word after it (" The") and a whitespace run followed by a
word gives up its last character to that word; cutting before the last whitespace
character of a run, when a letter or digit follows, gives the same pre-tokens on both
sides as the whole text does (tests/unit/test_corpus.py checks both against the whole).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice

# Words are runs of letters/digits/underscore; every other non-space character is a token of its own.
WORD_RE = re.compile(r"\w+|[^\w\s]")
# A safe cut (see above): a space or newline followed by a letter or digit ([^\W_] is
# str.isalnum() in a str pattern), or, for text written without spaces (Chinese,
# Japanese), between a letter or digit and a punctuation mark, where both word and BPE
# tokens end whatever follows. search() stops at the first one, so finding the next
# cut reads only as far as it.
_CUT_RE = re.compile(r"[ \n](?=[^\W_])|(?<=[^\W_])(?=[^\w\s])")
# Characters per chunk. Small enough that a chunk's working set (its copy, its UTF-32
# view, HF's per-byte alignments, the buffered chunks of BPE training) stays a few MB,
# large enough that the per-chunk Python overhead is noise.
CHUNK_CHARS = 1 << 16


def split_point(text: str, val_fraction: float, whole_words: bool = False) -> int:
    """Index where the held-out last val_fraction of text starts.

    With whole_words the cut moves back to the nearest space or newline, so no word is
    cut in two (which would invent two tokens that the text does not have).
    """
    cut = len(text) - int(len(text) * val_fraction)
    if whole_words and 0 < cut < len(text) and not (text[cut - 1].isspace() or text[cut].isspace()):
        space = max(text.rfind(" ", 0, cut), text.rfind("\n", 0, cut))
        if space > 0:
            cut = space
    return cut


def chunk_bounds(text: str, start: int = 0, end: int | None = None, size: int = CHUNK_CHARS) -> Iterator[tuple[int, int]]:
    """(lo, hi) pieces covering text[start:end], each about `size` characters, cut as
    drawn in the module docstring. A stretch with no such cut stays in one piece."""
    end = len(text) if end is None else end
    lo = start
    while lo < end:
        hi = _next_cut(text, lo + max(1, size), end)
        yield lo, hi
        lo = hi


def _next_cut(text: str, at: int, end: int) -> int:
    """The first safe cut at or after `at` and before end; end if there is none."""
    found = _CUT_RE.search(text, at, end) if at < end else None
    return found.start() if found else end


def count_words(text: str, start: int, end: int, limit: int) -> int:
    """Word tokens in text[start:end], counting no further than limit (so a check that
    needs seq_len + 1 tokens reads only that far into a large corpus)."""
    return sum(1 for _ in islice(WORD_RE.finditer(text, start, end), limit))
