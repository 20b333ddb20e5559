"""Chunked corpus preparation gives exactly what whole-text encoding gave, and the
submit-time window check counts what the worker will count."""

from __future__ import annotations

import random
from itertools import pairwise

import numpy as np
import pytest
import torch
from tokenizers import pre_tokenizers

from rnn_tasks.lm import corpus, windows
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.lm.task import prepare_corpus
from rnn_tasks.spec import SpecError
from rnn_tasks.text import chunk_bounds, count_words, split_point
from rnn_tasks.tokenizer import CharTokenizer, UnknownCharacterError, WordTokenizer, fit_tokenizer
from tests.support import make_corpus

# Multi-byte characters of every UTF-8 length, odd whitespace runs, contractions,
# digits and punctuation next to spaces: the places where a careless cut changes tokens.
MIXED = (
    "Café naïve — über  straße.\n\n  Ünïcödé 日本語の文章、句読点。 🐶🐱 emoji!\t tab\r\n"
    "don't  they'll we've 12 345 6,7 ... (brackets) [x]  \u00a0nbsp \u3000ideographic  end \n"
)


def _mixed(n: int = 40, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts = [make_corpus(300, seed=i) for i in range(n)] + [MIXED] * n
    rng.shuffle(parts)
    return "".join(parts)


def _old_encode(tok: object, text: str) -> torch.Tensor:
    """The encoding before rnn_tasks.corpus: a list of ints into a long tensor."""
    return torch.tensor(tok.encode(text), dtype=torch.long)  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [1, 7, 64, 1000, 1 << 16])
def test_chunks_cover_the_text_in_order(size: int) -> None:
    text = _mixed(5)
    bounds = list(chunk_bounds(text, 3, len(text) - 5, size))
    assert bounds[0][0] == 3 and bounds[-1][1] == len(text) - 5
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in pairwise(bounds))
    assert len(bounds) > 1 or size >= len(text)


@pytest.mark.parametrize("size", [1, 13, 200])
def test_bpe_pre_tokens_of_chunks_are_those_of_the_whole(size: int) -> None:
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    unspaced = "日本語の文章、句読点。「引用」です！" * 30 + "snake_case's,x.y'll__z"  # cut at punctuation only
    for text in (_mixed(5), unspaced):
        whole = [t for t, _ in pre.pre_tokenize_str(text)]
        pieces = [t for piece in corpus.chunks(text, size=size) for t, _ in pre.pre_tokenize_str(piece)]
        assert pieces == whole
        assert len(list(corpus.chunks(text, size=size))) > 1
        words = WordTokenizer.fit([text])
        assert [t for piece in corpus.chunks(text, size=size) for t in words.split(piece)] == words.split(text)


def test_char_encoding_equals_the_old_one_with_multibyte_characters() -> None:
    text = _mixed()
    tok = CharTokenizer.fit(text)
    assert any(ord(c) > 0xFFFF for c in tok.chars) and any(0x7F < ord(c) <= 0xFFFF for c in tok.chars)
    for size in (5, 4096, 1 << 16):
        ids = corpus.encode(tok, text, size=size)
        assert ids.dtype == torch.uint8 and torch.equal(ids.long(), _old_encode(tok, text))
        part = corpus.encode(tok, text, 17, 901, size=size)
        assert torch.equal(part.long(), _old_encode(tok, text[17:901]))


def test_char_encoding_refuses_unknown_characters_like_the_tokenizer() -> None:
    tok = CharTokenizer.fit("abc ")
    with pytest.raises(UnknownCharacterError) as old:
        tok.encode("a bxc✓")
    with pytest.raises(UnknownCharacterError) as new:
        corpus.encode(tok, "a bxc✓", size=2)
    assert str(new.value) == str(old.value)


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_chunked_fit_and_encode_equal_the_whole_text(kind: str) -> None:
    text = _mixed()
    cut = split_point(text, 0.1, whole_words=True)
    old = fit_tokenizer(kind, [text[:cut]], vocab_size=400)
    for size in (13, 1000):
        new = corpus.fit(kind, text, cut, vocab_size=400, size=size)
        assert new.to_json() == old.to_json()
        train_ids, val_ids, val_chars = corpus.split(new, text, 0.1, size=size)
        train_text, val_text = text[:cut], text[cut:]
        assert torch.equal(train_ids.long(), _old_encode(old, train_text))
        assert torch.equal(val_ids.long(), _old_encode(old, val_text))
        assert val_chars == len(val_text)


def test_ids_are_as_narrow_as_the_vocabulary_allows() -> None:
    assert corpus.id_dtype(256) == np.uint8
    assert corpus.id_dtype(257) == np.int16 and corpus.id_dtype(1 << 15) == np.int16
    assert corpus.id_dtype((1 << 15) + 1) == np.int32
    words = " ".join(f"w{i}" for i in range(40_000))
    tok = fit_tokenizer("word", [words])
    ids = corpus.encode(tok, words)
    assert ids.dtype == torch.int32 and int(ids.max()) == len(tok) - 1
    assert torch.equal(ids.long(), _old_encode(tok, words))


def test_count_words_stops_at_the_limit() -> None:
    text = "one, two three. four"
    assert count_words(text, 0, len(text), 100) == 6
    assert count_words(text, 0, len(text), 3) == 3
    assert count_words(text, 5, 14, 100) == len(WordTokenizer.fit(["x"]).split(text[5:14])) == 2


# --- submit-time window check (rnn_tasks.windows), against what the worker really gets ---


def _spec(kind: str, seq_len: int, **extra: object) -> LMSpec:
    return LMSpec.from_dict({"data": "x", "tokenizer": kind, "seq_len": seq_len, "vocab_size": 300, **extra})


def _worker_fits(kind: str, text: str, seq_len: int) -> bool:
    spec = _spec(kind, seq_len)
    _, train_ids, val_ids, _ = prepare_corpus(spec, text)
    return len(train_ids) >= seq_len + 1 and len(val_ids) >= 2


def test_word_window_is_counted_in_tokens_and_names_the_field() -> None:
    text = make_corpus(5000)  # ~1400 word tokens: enough characters for a 2000 window, not words
    with pytest.raises(SpecError) as err:
        windows.check("corpus.txt", text, _spec("word", 2000))
    assert err.value.field == "seq_len" and "word tokens" in err.value.message
    windows.check("corpus.txt", text, _spec("word", 200))
    windows.check("corpus.txt", text, _spec("char", 2000))  # characters are enough


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_window_check_agrees_with_the_worker(kind: str) -> None:
    text = _mixed(3)
    _, train_ids, _, _ = prepare_corpus(_spec(kind, 8), text)
    edge = len(train_ids) - 1  # the longest window the worker accepts
    for seq_len in (8, edge - 1, edge, edge + 1, edge + 50):
        fits = _worker_fits(kind, text, seq_len)
        assert fits == (seq_len <= edge)
        if fits:
            windows.check("c.txt", text, _spec(kind, seq_len))
        else:
            with pytest.raises(SpecError, match="seq_len"):
                windows.check("c.txt", text, _spec(kind, seq_len))


def test_bpe_check_falls_back_to_an_exact_count_above_the_pre_token_bound() -> None:
    # Long unrepeated words: far more BPE tokens than pre-tokens (words), so the lower
    # bound alone would refuse a window the worker can fill.
    rng = random.Random(1)
    text = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12)) for _ in range(300))
    words = len(text.split())
    _, train_ids, _, _ = prepare_corpus(_spec("bpe", 8), text)
    assert len(train_ids) > 2 * words
    windows.check("c.txt", text, _spec("bpe", words + 10))
    assert _worker_fits("bpe", text, words + 10)


def test_held_out_part_too_short_names_val_fraction() -> None:
    text = "word " * 300 + "end"
    with pytest.raises(SpecError) as err:
        windows.check("c.txt", text, _spec("word", 8, val_fraction=0.001))
    assert err.value.field == "val_fraction"
