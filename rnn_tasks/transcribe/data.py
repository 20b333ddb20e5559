"""Utterances -> features -> length-bucketed, padded batches for CTC.

Every utterance's features are computed once and kept on the CPU. An epoch draws a
random order, cuts it into pools of 50 batches, sorts each pool by length and cuts
it into batches, so a batch holds utterances of similar length (little padding) while
the order of batches stays random:

    order   u7 u2 u9 u4 u1 ...         pool sorted by frames   u2 u4 | u9 u1 | u7 ...
    batch   x (B, T, M) zero-padded past each length, lengths (B,), targets concatenated
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

BLANK = 0
POOL = 50  # batches per length-sorted pool


class Alphabet:
    """The characters of the training transcripts; id 0 is the CTC blank, chars[i] is id i + 1."""

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self._ids = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def fit(cls, texts: Sequence[str]) -> Alphabet:
        return cls("".join(sorted(set("".join(texts)))))

    def __len__(self) -> int:
        return len(self.chars) + 1

    def unknown(self, text: str) -> str:
        return "".join(dict.fromkeys(c for c in text if c not in self._ids))

    def encode(self, text: str) -> list[int]:
        return [self._ids[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i - 1] for i in ids if i != BLANK)


class Batch(NamedTuple):
    x: torch.Tensor  # (B, T, M) on the device, zero past each length
    lengths: torch.Tensor  # (B,) frames, on the CPU
    targets: torch.Tensor  # (sum of label lengths,) on the device; empty without labels
    target_lengths: torch.Tensor  # (B,) on the CPU
    rows: list[int]  # which utterances, in batch order


@dataclass
class Utterances:
    feats: list[torch.Tensor]  # (frames, n_mels) each, on the CPU
    labels: list[list[int]] | None  # alphabet ids, None when unlabelled

    def __len__(self) -> int:
        return len(self.feats)

    @property
    def lengths(self) -> list[int]:
        return [len(f) for f in self.feats]

    def batch(self, rows: Sequence[int], device: torch.device) -> Batch:
        lengths = torch.tensor([len(self.feats[r]) for r in rows], dtype=torch.long)
        x = torch.zeros(len(rows), int(lengths.max()), self.feats[rows[0]].shape[1])
        for i, r in enumerate(rows):
            x[i, : len(self.feats[r])] = self.feats[r]
        if self.labels is None:
            targets, target_lengths = torch.zeros(0, dtype=torch.long), torch.zeros(len(rows), dtype=torch.long)
        else:
            labels = [self.labels[r] for r in rows]
            targets = torch.tensor([c for lab in labels for c in lab], dtype=torch.long)
            target_lengths = torch.tensor([len(lab) for lab in labels], dtype=torch.long)
        return Batch(x.to(device), lengths, targets.to(device), target_lengths, list(rows))


def bucketed(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch of batches of similar length, in an order drawn from generator."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches: list[list[int]] = []
    pool = batch_size * POOL
    for lo in range(0, len(order), pool):
        chunk = sorted(order[lo : lo + pool], key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches for inference: sorted by length, so padding is small (results do not depend on it)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[j : j + batch_size] for j in range(0, len(order), batch_size)]
