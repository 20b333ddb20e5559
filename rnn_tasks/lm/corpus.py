"""A corpus as token ids in one compact buffer, fitted and encoded a chunk at a time.

Peak memory per corpus byte of ASCII text (benchmarks/corpus_memory.py measures it):

    the text (a str, which the caller holds)                1
    the ids: uint8, int16 or int32 by vocabulary size       1 for char; ~0.3-0.8 for word and BPE
    word/BPE: chunk ids and their concatenation, briefly    the ids once more
    one chunk's working set (text.CHUNK_CHARS characters)   a few MB, whatever the corpus size

The earlier way (a Python list of ints, then a torch.long tensor, of each split copied
out of the text) cost 16-18 bytes per corpus byte for characters.

Every path gives the same ids as tokenizer.encode() on the same text (the tests compare
them), so a run is bit-identical to one that encoded the old way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rnn_tasks.text import CHUNK_CHARS, chunk_bounds, split_point
from rnn_tasks.tokenizer import CharTokenizer, Tokenizer, UnknownCharacterError, fit_tokenizer

_UNICODE = 0x110000  # code points; a char lookup table covers all of them (4.4 MB)


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest integer type that holds every id (models index with .long() windows)."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 15:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def chunks(text: str, start: int = 0, end: int | None = None, size: int = CHUNK_CHARS) -> Iterator[str]:
    """text[start:end] as pieces that no token crosses (see rnn_tasks.text)."""
    for lo, hi in chunk_bounds(text, start, end, size):
        yield text[lo:hi]


def encode(tokenizer: Tokenizer, text: str, start: int = 0, end: int | None = None,
           size: int = CHUNK_CHARS) -> torch.Tensor:
    """tokenizer.encode(text[start:end]) as a 1-D tensor of id_dtype(len(tokenizer))."""
    end = len(text) if end is None else end
    dtype = id_dtype(len(tokenizer))
    if isinstance(tokenizer, CharTokenizer):
        return torch.from_numpy(_encode_chars(tokenizer, text, start, end, dtype, size))
    # Chunk ids go into a list of small arrays and are joined once: the ids exist twice
    # only during that join, never as Python ints beyond one chunk.
    parts = [np.asarray(tokenizer.encode(piece), dtype=dtype) for piece in chunks(text, start, end, size)]
    return torch.from_numpy(np.concatenate(parts) if parts else np.empty(0, dtype=dtype))


def _encode_chars(tokenizer: CharTokenizer, text: str, start: int, end: int, dtype: np.dtype,
                  size: int) -> np.ndarray:
    """Characters -> ids through a code-point lookup table, on each chunk's UTF-32 view."""
    table = np.full(_UNICODE, -1, dtype=np.int32)
    table[[ord(c) for c in tokenizer.chars]] = np.arange(len(tokenizer), dtype=np.int32)
    out = np.empty(end - start, dtype=dtype)
    for lo in range(start, end, size):
        hi = min(lo + size, end)
        points = np.frombuffer(text[lo:hi].encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = table[points]
        if ids.min(initial=0) < 0:
            missing = tokenizer.unknown(text[start:end])  # the same message as CharTokenizer.encode
            raise UnknownCharacterError(f"characters not in the vocabulary: {''.join(missing)!r}")
        out[lo - start : hi - start] = ids
    return out


def fit(kind: str, text: str, end: int, *, min_freq: int = 1, max_vocab: int | None = None,
        vocab_size: int = 8000, lowercase: bool = False, size: int = CHUNK_CHARS) -> Tokenizer:
    """A tokenizer of `kind` fitted on text[:end], read a chunk at a time.

    Fitting on the chunks gives the same tokenizer as fitting on the whole: word counts
    and BPE pre-token counts are sums over pieces that no token crosses.
    """
    if kind == "char":
        return fit_tokenizer("char", [text[:end]] if end < len(text) else [text])
    return fit_tokenizer(kind, chunks(text, 0, end, size), min_freq=min_freq, max_vocab=max_vocab,
                         vocab_size=vocab_size, lowercase=lowercase)


def split(tokenizer: Tokenizer, text: str, val_fraction: float,
          size: int = CHUNK_CHARS) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Training ids, held-out ids and held-out characters of text (cut as train.split_text)."""
    cut = split_point(text, val_fraction, whole_words=tokenizer.kind != "char")
    return encode(tokenizer, text, 0, cut, size), encode(tokenizer, text, cut, len(text), size), len(text) - cut
