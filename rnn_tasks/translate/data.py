"""Sentence pairs as id lists, and padded, length-bucketed batches of them.

    source  "A man runs ."   -> [a, man, runs, ., <eos>]                  (never empty)
    target  "Un homme court ." -> tgt_in  [<bos>, un, homme, court, .]
                                  tgt_out [un, homme, court, ., <eos>]

An epoch shuffles the pairs, cuts them into pools of 50 batches, sorts each pool by
source length and cuts it into batches, then shuffles the batches: batches hold
sentences of similar length (little padding) while their order stays random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rnn_tasks.tokenizer import Tokenizer

POOL_BATCHES = 50  # batches per length-sorted pool
Pair = tuple[list[int], list[int]]  # source ids (ending in <eos>), target ids (no specials)


@dataclass(frozen=True)
class Batch:
    src: torch.Tensor  # (B, S) padded source ids
    lengths: torch.Tensor  # (B,) source lengths, on the CPU (pack_padded_sequence wants them there)
    tgt_in: torch.Tensor  # (B, T) <bos> + target, padded
    tgt_out: torch.Tensor  # (B, T) target + <eos>, padded
    tokens: int  # real target tokens (including <eos>)


def special_ids(tok: Tokenizer) -> tuple[int, int, int]:
    """pad, bos, eos of a tokenizer fitted with specials."""
    if tok.pad_id is None or tok.bos_id is None or tok.eos_id is None:
        raise ValueError(f"a {tok.kind} tokenizer without <pad>/<bos>/<eos> cannot be used for translation")
    return tok.pad_id, tok.bos_id, tok.eos_id


def encode_sources(tok: Tokenizer, sentences: Sequence[str]) -> list[list[int]]:
    """Source ids with a closing <eos>: every sentence, even an empty one, has length >= 1."""
    _, _, eos = special_ids(tok)
    return [tok.encode(s) + [eos] for s in sentences]


def encode_pairs(src_tok: Tokenizer, tgt_tok: Tokenizer, sources: Sequence[str],
                 targets: Sequence[str]) -> list[Pair]:
    return list(zip(encode_sources(src_tok, sources), [tgt_tok.encode(t) for t in targets], strict=True))


def drop_long(pairs: list[Pair], max_len: int) -> tuple[list[Pair], int]:
    """Pairs whose sides both have at most max_len tokens (source <eos> not counted); and how many went."""
    kept = [p for p in pairs if len(p[0]) - 1 <= max_len and len(p[1]) <= max_len]
    return kept, len(pairs) - len(kept)


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def make_batch(pairs: Sequence[Pair], pad_id: int, bos: int, eos: int, device: torch.device) -> Batch:
    sources = [p[0] for p in pairs]
    return Batch(
        src=pad(sources, pad_id).to(device),
        lengths=torch.tensor([len(s) for s in sources], dtype=torch.long),
        tgt_in=pad([[bos, *p[1]] for p in pairs], pad_id).to(device),
        tgt_out=pad([[*p[1], eos] for p in pairs], pad_id).to(device),
        tokens=sum(len(p[1]) + 1 for p in pairs),
    )


def batch_order(pairs: Sequence[Pair], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches as lists of pair indices, drawn from generator (see the module docstring)."""
    order = torch.randperm(len(pairs), generator=generator).tolist()
    pool = batch_size * POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: (len(pairs[i][0]), len(pairs[i][1])))
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def batches_per_epoch(n_pairs: int, batch_size: int) -> int:
    """What batch_order yields: full pools, then the last partial pool's batches."""
    pool = batch_size * POOL_BATCHES
    full, rest = divmod(n_pairs, pool)
    return full * POOL_BATCHES + -(-rest // batch_size)


def sorted_chunks(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices in chunks of `size`, longest first, for evaluation and decoding with little padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + size] for i in range(0, len(order), size)]
