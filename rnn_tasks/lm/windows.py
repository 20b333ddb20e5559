"""Does a corpus fill a training window? Counted in the run's own tokens, at submit time.

A word or BPE run's --seq-len is in tokens, and the worker splits the text before it
tokenizes it (rnn_tasks.text.split_point), so the check counts tokens on each side of
that same cut: the training part needs seq_len + 1 tokens, the held-out part 2.

No torch here (the CLI calls this). Counting stops as soon as the need is met, so a
large corpus costs only its first seq_len tokens:

    char  characters, exactly (min_corpus_chars)
    word  WORD_RE matches, exactly: the word tokenizer emits one id per match
    bpe   a lower bound first: HF's own byte-level pre-tokens, since BPE never merges
          across pre-tokens and gives each at least one token. Only when that bound
          falls short (a corpus with fewer words than the window, which is small) is the
          real tokenizer fitted on the training part, as the worker will, and the exact
          count used: a refusal is never a guess, and no corpus passes that the worker
          would refuse.
"""

from __future__ import annotations

from itertools import islice

from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.spec import SpecError, min_corpus_chars
from rnn_tasks.text import chunk_bounds, count_words, split_point


def check(name: str, text: str, spec: LMSpec) -> None:
    """SpecError naming the field to change when `text` cannot train `spec`."""
    if spec.tokenizer == "char":
        need = min_corpus_chars(spec.seq_len, spec.val_fraction)
        if len(text) < need:
            raise SpecError("data", f"{name} has {len(text)} characters; with seq_len {spec.seq_len} and "
                                    f"val_fraction {spec.val_fraction} it needs at least {need}")
        return
    cut = split_point(text, spec.val_fraction, whole_words=True)
    need = spec.seq_len + 1
    if spec.tokenizer == "word":
        train, held_out = count_words(text, 0, cut, need), count_words(text, cut, len(text), 2)
    else:
        train, held_out = _bpe_tokens(text, cut, spec, need)
    kind = spec.tokenizer
    if train < need:
        raise SpecError("seq_len", f"{name} has {train} {kind} tokens before its held-out part; a window of "
                                   f"seq_len {spec.seq_len} {kind} tokens needs at least {need}")
    if held_out < 2:
        raise SpecError("val_fraction", f"the held-out {spec.val_fraction:g} of {name} has {held_out} {kind} "
                                        "tokens; it needs at least 2 (use a longer corpus or a larger val_fraction)")


def _bpe_tokens(text: str, cut: int, spec: LMSpec, need: int) -> tuple[int, int]:
    """(training, held-out) BPE token counts, each exact or at least what is needed."""
    from tokenizers import pre_tokenizers  # HF's Rust tokenizers; not torch

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)

    def pre_tokens(lo: int, hi: int, limit: int) -> int:
        pieces = (len(pre.pre_tokenize_str(text[a:b])) for a, b in chunk_bounds(text, lo, hi, 4096))
        total = 0
        for n in pieces:  # pieces are cut where pre-tokens are (rnn_tasks.text), so counts add up
            total += n
            if total >= limit:
                break
        return total

    train, held_out = pre_tokens(0, cut, need), pre_tokens(cut, len(text), 2)
    if train >= need and held_out >= 2:
        return train, held_out
    from rnn_tasks.tokenizer import fit_tokenizer

    pieces = [text[a:b] for a, b in chunk_bounds(text, 0, cut)]
    tokenizer = fit_tokenizer("bpe", pieces, min_freq=spec.min_freq, vocab_size=spec.vocab_size,
                              lowercase=spec.lowercase)

    def tokens(lo: int, hi: int, limit: int) -> int:
        counts = (len(tokenizer.encode(text[a:b])) for a, b in chunk_bounds(text, lo, hi, 4096))
        return sum(islice(counts, limit))  # every piece has at least one token

    return tokens(0, cut, need), tokens(cut, len(text), 2)
