"""Peak memory of a language model's corpus preparation, per corpus byte.

    python benchmarks/corpus_memory.py [--mb 100] [--tokenizers char,word,bpe]

Writes a corpus of --mb megabytes of random words (a made-up Zipf-distributed
vocabulary of 30,000 words, 3% of them with accented Latin-1 letters, in sentences and
paragraphs, as 16 blocks of ~1 MB repeated in random order; generated here, nothing is
downloaded), then, for each tokenizer, starts a
fresh Python process that does what a worker does before training: reads the corpus
bytes, decodes them to text (as workers/runner.py does), fits the tokenizer on the
training part and encodes both parts (rnn_tasks.lm.task.prepare_corpus).

Peak RSS is resource.getrusage's ru_maxrss of that process minus its ru_maxrss after
imports and a warm-up on a tiny corpus (HF's thread pool, allocator arenas), divided by
the corpus size in bytes. Prints one JSON object.

The accented letters are Latin-1 on purpose: Python keeps a str at the width of its
widest character, so one character beyond U+00FF makes the whole text 2 bytes a
character (beyond U+FFFF, 4), which the text itself adds to every figure here. The
submit-time check counts that width (workers/submit.py: corpus_memory).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "an", "el", "is", "or", "un", "th", "ing", "er"]
ACCENTED = ["é", "ü", "ñ", "ø", "ç", "à"]  # Latin-1: see the module docstring


def _vocabulary(rng: np.random.Generator, size: int = 30_000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        word = "".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), rng.integers(1, 4)))
        if rng.random() < 0.03:
            at = int(rng.integers(0, len(word)))
            word = word[:at] + ACCENTED[int(rng.integers(0, len(ACCENTED)))] + word[at + 1 :]
        words.add(word)
    return sorted(words)


def _block(rng: np.random.Generator, vocab: list[str], p: np.ndarray, words: int) -> str:
    idx = rng.choice(len(vocab), size=words, p=p)
    out: list[str] = []
    capital = True
    for i, end in zip(idx.tolist(), rng.random(words).tolist()):
        out.append((vocab[i].capitalize() if capital else vocab[i])
                   + (".\n" if end < 0.01 else ". " if end < 0.08 else ", " if end < 0.12 else " "))
        capital = end < 0.08
    return "".join(out)


def write_corpus(path: Path, size: int, seed: int = 0) -> int:
    """`size` bytes (to a word) of UTF-8 text at path: 16 blocks of ~1 MB of random sentences,
    repeated in a random order (building every word in Python would take minutes)."""
    rng = np.random.default_rng(seed)
    vocab = [word for _, word in sorted(zip(rng.random(30_000), _vocabulary(rng)))]  # Zipf rank != alphabetical
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    blocks = [_block(rng, vocab, p, 150_000).encode("utf-8") for _ in range(16)]
    written = 0
    with path.open("wb") as f:
        while written < size:
            block = blocks[int(rng.integers(0, len(blocks)))]
            if written + len(block) > size:  # the last block: cut at a space, never inside a character
                block = block[: block.rfind(b" ", 0, size - written) + 1]
            written += f.write(block) or 1
    return path.stat().st_size


def _child(kind: str, path: str) -> None:
    import resource

    from rnn_tasks.lm.spec import LMSpec
    from rnn_tasks.lm.task import prepare_corpus

    spec = LMSpec.from_dict({"data": "x", "tokenizer": kind})
    prepare_corpus(spec, "Warm up, the tokenizer and its threads.\n" * 200)

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    base = peak()
    start = time.perf_counter()
    text = Path(path).read_bytes().decode("utf-8")  # as workers/runner.py reads a corpus
    tokenizer, train_ids, val_ids, _ = prepare_corpus(spec, text)
    seconds = time.perf_counter() - start
    size = Path(path).stat().st_size
    print(json.dumps({
        "peak_bytes": peak() - base,
        "peak_per_corpus_byte": round((peak() - base) / size, 3),
        "tokens": len(train_ids) + len(val_ids),
        "id_dtype": str(train_ids.dtype).replace("torch.", ""),
        "vocab_size": len(tokenizer),
        "seconds": round(seconds, 1),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="corpus size in MB (10^6 bytes)")
    parser.add_argument("--tokenizers", default="char,word,bpe")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        size = write_corpus(path, int(args.mb * 1e6))
        results: dict[str, object] = {"corpus_bytes": size, "corpus": "random Zipf words, 3% accented"}
        for kind in args.tokenizers.split(","):
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            results[kind] = json.loads(out.stdout.splitlines()[-1])
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
