"""Character tokenizer and TBPTT stream layout."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnn_tasks.lm.data import Streams, eval_windows
from rnn_tasks.tokenizer import CharTokenizer, UnknownCharacterError


def test_round_trip(corpus: str) -> None:
    tok = CharTokenizer.fit(corpus + "é✓")
    assert tok.decode(tok.encode(corpus + "é✓")) == corpus + "é✓"
    assert len(tok) == len(set(corpus + "é✓"))


def test_unknown_characters_are_named() -> None:
    tok = CharTokenizer.fit("abc")
    assert tok.unknown("abxyx") == ["x", "y"]
    with pytest.raises(UnknownCharacterError, match="xy"):
        tok.encode("axy")


def test_streams_are_contiguous_across_windows() -> None:
    ids = torch.arange(1000)
    streams = Streams(ids, batch_size=4, seq_len=10)
    windows = list(streams.epoch(torch.Generator().manual_seed(0)))
    assert len(windows) >= streams.windows_per_epoch() - 1
    for (x0, y0), (x1, _) in itertools.pairwise(windows):
        assert torch.equal(y0[:, :-1], x0[:, 1:])  # targets are inputs shifted by one
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # each row continues the previous window
    # every row is its own stretch of the corpus, so nothing is trained twice in an epoch
    seen = torch.cat([x.flatten() for x, _ in windows])
    assert len(seen.unique()) == len(seen)


def test_small_corpus_uses_fewer_streams() -> None:
    streams = Streams(torch.arange(50), batch_size=64, seq_len=10)
    assert 1 <= streams.batch < 64
    assert len(list(streams.epoch(torch.Generator().manual_seed(1)))) >= 1


def test_eval_windows_score_every_character_once() -> None:
    ids = torch.arange(1001)
    targets = torch.cat([y.flatten() for _, y in eval_windows(ids, batch=7, seq_len=13)])
    assert len(targets.unique()) == len(targets)
    assert len(targets) >= 1000 - 7
