"""Shared helpers: small generated corpora (tests never need ../shared)."""

from __future__ import annotations

import os
import random
import shutil

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


def prometheus_tool(name: str) -> str:
    """The path of `prometheus` or `promtool`. Skipped where the Debian package is not
    installed, unless RNNQ_REQUIRE_PROMETHEUS=1 (set by .ci/run) makes that a failure."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("RNNQ_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"RNNQ_REQUIRE_PROMETHEUS=1 but {name} is not on PATH (apt-get install prometheus)")
        pytest.skip(f"{name} is not on PATH (apt-get install prometheus)")
    return path


@pytest.fixture
def corpus() -> str:
    return make_corpus(20_000)
