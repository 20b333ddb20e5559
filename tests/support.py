"""Shared test helpers: seeded toy data every kind can learn, and waits on conditions.

One place for the generators (a test that needs a corpus, a CSV or a parallel pair
takes it from here) and for the polling helpers; nothing here starts a server.
The toy data is chosen so that a few dozen steps of a tiny model learn it with a wide
margin, which lets tests assert what was learned rather than that a figure exists.
"""

from __future__ import annotations

import gzip
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # unit tests import this module without the worker layer
    from rnn_tasks.spec import TrainedModel
    from workers.jobstore import JobStore

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "its", "red", "ball"]

# Four fixed sentences: once the first word of a sentence is seen the rest is certain,
# so a model that learned the text is far below the unigram perplexity.
PHRASES = [
    "the cat sat on a red mat.",
    "a dog ran to its ball.",
    "the red ball ran on.",
    "its cat and dog sat.",
]

# Sentiment: three neutral words and one word that decides the label.
GOOD, BAD, FILLER = ["good", "great", "lovely"], ["bad", "awful", "poor"], ["the", "film", "was", "a", "plot"]

# Translation: each word maps to one other word, order kept.
LEXICON = {"cat": "chat", "dog": "chien", "red": "rouge", "big": "grand", "the": "le", "sees": "voit"}


def make_corpus(chars: int, seed: int = 0) -> str:
    """A text of the same few words in random order (cheap, not very learnable)."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))).capitalize() + ".\n"
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:chars]


def phrase_corpus(chars: int, seed: int = 0) -> str:
    """PHRASES in random order, one per line: learnable far below unigram perplexity."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        out.append(rng.choice(PHRASES) + "\n")
        size += len(out[-1])
    return "".join(out)


def unigram_perplexity(tokens: list[str]) -> float:
    """The perplexity of the best model that ignores context: exp of the token entropy."""
    counts: dict[str, int] = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    n = len(tokens)
    return math.exp(-sum(c / n * math.log(c / n) for c in counts.values()))


def corpus_file(folder: Path, chars: int = 6000, name: str = "corpus.txt") -> Path:
    path = folder / name
    path.write_text(make_corpus(chars), encoding="utf-8")
    return path


def sentiment_csv(path: Path, rows: int = 400, labels: tuple[str, ...] = ("pos", "neg")) -> Path:
    """text,label rows; the first label's rows hold a GOOD word, the others a BAD one."""
    rng = random.Random(0)
    lines = ["text,label"]
    for i in range(rows):
        label = labels[i % len(labels)]
        words = rng.sample(FILLER, 3) + [rng.choice(GOOD if label == labels[0] else BAD)]
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def series_csv(path: Path, n: int = 240) -> Path:
    """Monthly values: a yearly sine on a linear trend, so seasonal naive is off by the trend."""
    lines = ["month,value"] + [f"{i},{10 + 5 * math.sin(2 * math.pi * i / 12) + 0.1 * i:.4f}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def parallel(folder: Path, n: int = 300) -> tuple[Path, Path]:
    """A toy language pair word for word by LEXICON (source gzipped, target plain)."""
    rng = random.Random(1)
    src, tgt = [], []
    for _ in range(n):
        words = [rng.choice(list(LEXICON)) for _ in range(rng.randint(2, 5))]
        src.append(" ".join(words))
        tgt.append(" ".join(LEXICON[w] for w in words))
    source, target = folder / "src.en.gz", folder / "tgt.fr"
    source.write_bytes(gzip.compress(("\n".join(src) + "\n").encode()))
    target.write_text("\n".join(tgt) + "\n")
    return source, target


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `predicate()` holds; the timeout only bounds a hang, it is not the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


FINAL = ("succeeded", "failed", "cancelled")


def job_step(store: JobStore, job_id: str) -> int:
    """The last step the job reported (0 before its first report)."""
    progress = store.get(job_id).progress
    return int(progress["step"]) if progress else 0


def job_final(store: JobStore, job_id: str) -> bool:
    """Whether the job ended; False while Redis is unreachable (tests that restart it)."""
    try:
        return store.get(job_id).state in FINAL
    except Exception:  # noqa: BLE001 - redis errors and JobStore's own, during an outage
        return False


def wait_state(store: JobStore, job_id: str, states: tuple[str, ...] = FINAL, timeout: float = 300) -> None:
    wait_for(lambda: store.get(job_id).state in states, timeout, f"job {job_id} to reach {states}")


def init_from_refusal(check_sources: Callable[..., Any], fields: dict[str, Any], lm: TrainedModel,
                      message: str) -> str:
    """The field a task's submit-time check_sources names in refusing init_from (the job
    `lm`) with the user's `fields`; the refusal must match `message`."""
    import pytest

    from rnn_tasks.spec import SpecError

    with pytest.raises(SpecError, match=message) as err:
        check_sources({"init_from": "my-lm", **fields}, lambda name, flag: lm)
    return err.value.field
