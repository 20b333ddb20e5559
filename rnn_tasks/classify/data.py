"""Texts -> token ids -> padded batches for the classifier.

Every text of a split is encoded once into one right-padded matrix; a batch gathers its
rows and trims the matrix to its own longest text:

    ids (N, L)   t t t t 0 0 0        batch [2, 0]  ->  t t t t t t     lengths [6, 4]
                 t t 0 0 0 0 0                          t t t t 0 0
                 t t t t t t 0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from rnn_tasks.tokenizer import CharTokenizer, Tokenizer, fit_tokenizer, tokenizer_from_json

PAD_ID = 0
UNK_ID = 1


class TextEncoder:
    """A fitted tokenizer plus the classifier's conventions: <pad> = 0, unknown input
    becomes <unk> (never an error at predict time), optional lower-casing, at most max_len
    tokens (the first ones), at least one token per text.

    The char tokenizer has no specials (the char LM's layout), so its ids are shifted by
    two here to make room for <pad> and <unk>.
    """

    def __init__(self, tokenizer: Tokenizer, lowercase: bool, max_len: int) -> None:
        self.tokenizer, self.lowercase, self.max_len = tokenizer, lowercase, max_len
        self._chars: dict[str, int] | None = None
        if isinstance(tokenizer, CharTokenizer):
            self._chars = {c: i + 2 for i, c in enumerate(tokenizer.chars)}
        elif tokenizer.pad_id != PAD_ID or tokenizer.unk_id != UNK_ID:
            raise ValueError(f"expected <pad>=0 and <unk>=1, got {tokenizer.pad_id} and {tokenizer.unk_id}")

    @classmethod
    def fit(cls, kind: str, texts: Sequence[str], *, lowercase: bool, max_len: int, min_freq: int = 1,
            max_vocab: int | None = None, vocab_size: int = 8000) -> TextEncoder:
        prepared = [t.lower() for t in texts] if lowercase else list(texts)
        tok = fit_tokenizer(kind, prepared, min_freq=min_freq, max_vocab=max_vocab, vocab_size=vocab_size)
        return cls(tok, lowercase, max_len)

    def to_meta(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_json(), "lowercase": self.lowercase, "max_len": self.max_len}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TextEncoder:
        return cls(tokenizer_from_json(meta["tokenizer"]), bool(meta["lowercase"]), int(meta["max_len"]))

    def __len__(self) -> int:
        return len(self.tokenizer) + (2 if self._chars is not None else 0)

    def encode(self, text: str) -> list[int]:
        if self.lowercase:
            text = text.lower()
        if self._chars is not None:
            ids = [self._chars.get(c, UNK_ID) for c in text[: self.max_len]]
        else:
            ids = self.tokenizer.encode(text)[: self.max_len]
        return ids or [UNK_ID]  # packing needs a length of at least 1


class Batch(NamedTuple):
    ids: torch.Tensor  # (B, T) on the model's device, right-padded with PAD_ID
    lengths: torch.Tensor  # (B,) int64 on the CPU (pack_padded_sequence wants them there)
    labels: torch.Tensor | None  # (B,) class ids on the device; None for unlabelled text


@dataclass(frozen=True)
class Encoded:
    """One split, encoded: see the module docstring."""

    ids: torch.Tensor  # (N, L) on the device
    lengths: torch.Tensor  # (N,) on the CPU
    labels: torch.Tensor | None  # (N,) on the device

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    def batch(self, rows: torch.Tensor) -> Batch:
        lengths = self.lengths[rows]
        on_dev = rows.to(self.ids.device)
        ids = self.ids[on_dev, : int(lengths.max())]
        return Batch(ids, lengths, None if self.labels is None else self.labels[on_dev])

    def shuffled(self, batch_size: int, generator: torch.Generator, start: int = 0) -> Iterator[Batch]:
        """One epoch in an order drawn from generator, skipping the first `start` batches."""
        order = torch.randperm(len(self), generator=generator)
        for lo in range(start * batch_size, len(self), batch_size):
            yield self.batch(order[lo : lo + batch_size])

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        for lo in range(0, len(self), batch_size):
            yield self.batch(torch.arange(lo, min(lo + batch_size, len(self))))


def encode(encoder: TextEncoder, texts: Sequence[str], labels: Sequence[int] | None, device: torch.device) -> Encoded:
    rows = [encoder.encode(t) for t in texts]
    width = max((len(r) for r in rows), default=1)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    y = None if labels is None else torch.tensor(list(labels), dtype=torch.long, device=device)
    return Encoded(ids.to(device), lengths, y)


def class_weights(labels: Sequence[int], n_classes: int) -> list[float]:
    """Balanced weights n / (classes * count): each class adds the same total weight to the loss."""
    counts = [0] * n_classes
    for label in labels:
        counts[label] += 1
    return [len(labels) / (n_classes * c) if c else 0.0 for c in counts]

