"""Shared helpers: small generated corpora (tests never need ../shared)."""

from __future__ import annotations

import random

import pytest


def make_corpus(chars: int, seed: int = 0) -> str:
    """A learnable text: a few repeating sentences with random word order."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "its", "red", "ball"]
    out: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))).capitalize() + ".\n"
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:chars]


@pytest.fixture
def corpus() -> str:
    return make_corpus(20_000)
