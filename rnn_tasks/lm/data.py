"""Contiguous streams for truncated backpropagation through time.

The training split is cut into `batch` equal streams laid side by side, so row b of
every window continues row b of the previous window and the hidden state carried
across windows always has real context:

    corpus  a b c d e f g h i j k l m n o p q r s t u v w x     (batch=3)

    stream 0: a b c d e f g h       window 0 (seq_len=3): x = a b c | y = b c d
    stream 1: i j k l m n o p                             x = i j k | y = j k l
    stream 2: q r s t u v w x                             x = q r s | y = r s t
                                    window 1:             x = d e f | y = e f g ...

Each epoch starts the streams at a random offset below seq_len, so window boundaries
move between epochs while every character is still trained on once per epoch.

`ids` may be any integer dtype (rnn_tasks.lm.corpus keeps them as narrow as the vocabulary
allows); the windows come out as int64, which embeddings and cross_entropy index with.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from rnn_tasks.errors import DataError


class CorpusTooShortError(DataError):
    """The corpus cannot fill one training window and a validation split."""


__all__ = ["CorpusTooShortError", "Streams", "eval_windows"]


@dataclass(frozen=True)
class Streams:
    """Training windows over `ids`, laid out as described in the module docstring."""

    ids: torch.Tensor
    batch_size: int
    seq_len: int

    def __post_init__(self) -> None:
        if len(self.ids) < self.seq_len + 1:
            raise CorpusTooShortError(
                f"training split has {len(self.ids)} tokens, needs at least seq_len + 1 = {self.seq_len + 1}"
            )

    @property
    def batch(self) -> int:
        """Streams actually used: fewer than batch_size when the corpus is small."""
        return max(1, min(self.batch_size, (len(self.ids) - self.seq_len) // (self.seq_len + 1)))

    def windows_per_epoch(self) -> int:
        stream_len = (len(self.ids) - self.seq_len) // self.batch
        return max(1, (stream_len - 1) // self.seq_len)

    def epoch(self, generator: torch.Generator, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x, y) windows of shape (batch, seq_len), skipping the first `start`."""
        # Keep at least one whole window after the offset, even for a tiny corpus.
        room = len(self.ids) - self.batch * (self.seq_len + 1)
        offset = int(torch.randint(0, max(1, min(self.seq_len, room + 1)), (1,), generator=generator))
        usable = len(self.ids) - offset
        stream_len = usable // self.batch
        grid = self.ids[offset : offset + stream_len * self.batch].view(self.batch, stream_len)
        for w in range(start, self.windows_per_epoch()):
            lo = w * self.seq_len
            if lo + self.seq_len + 1 > stream_len:
                return
            yield grid[:, lo : lo + self.seq_len].long(), grid[:, lo + 1 : lo + self.seq_len + 1].long()


def eval_windows(ids: torch.Tensor, batch: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Validation windows: every character once, in `batch` contiguous streams.

    The tail that does not fill a whole window is still scored by a final short window.
    """
    batch = max(1, min(batch, (len(ids) - 1) // 2))
    stream_len = (len(ids) - 1) // batch
    x_all = ids[: stream_len * batch].view(batch, stream_len)
    y_all = ids[1 : stream_len * batch + 1].view(batch, stream_len)
    for lo in range(0, stream_len, seq_len):
        yield x_all[:, lo : lo + seq_len].long(), y_all[:, lo : lo + seq_len].long()
