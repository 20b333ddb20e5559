"""Recurrent text classifier: Embedding -> (bi)RNN/LSTM/GRU -> pooling -> Linear.

Batches are padded on the right and packed, so the recurrent cells never read padding
and a text gets the same logits whatever else shares its batch:

    ids      (B, T)   a b c 0 0        lengths (B,) = [3, 5, ...]
                      d e f g h
    packed   the RNN runs each row for exactly its own length (both directions)
    out      (B, T, dirs*H), zero past each length
    pooled   (B, dirs*H)   mean / max over the real positions, or the final states
    logits   (B, classes)

An ensemble (`members` > 1) is that many such networks, started from different random
weights and trained on the same batches, each by its own loss; it predicts the mean of
their probabilities, as log-probabilities (which are logits: their softmax is
themselves), so everything that reads logits reads an ensemble's alike. On a few
thousand short texts one network's accuracy moves by points with its initial weights,
and on a review domain it never saw the more so; the average moves less.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_tasks.models import open_forget_gates, recurrent


@dataclass(frozen=True)
class ClassifierConfig:
    """The model's shape; stored in checkpoint meta so predict can rebuild it."""

    vocab_size: int
    n_classes: int
    arch: str = "gru"
    embed: int = 64
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = True
    pooling: str = "mean"
    pad_id: int = 0
    members: int = 1  # networks averaged; checkpoints from before ensembles have one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TextClassifier(nn.Module):
    """One network (whatever `config.members` says: see build)."""

    config: ClassifierConfig

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        dirs = 2 if config.bidirectional else 1
        self.embed = nn.Embedding(config.vocab_size, config.embed, padding_idx=config.pad_id)
        # nn.Dropout(0.0) still draws a mask in training mode; skip it.
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.rnn = recurrent(config.arch, config.embed, config.hidden, config.layers, config.dropout,
                             config.bidirectional)
        self.head = nn.Linear(dirs * config.hidden, config.n_classes)
        open_forget_gates(self.rnn)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) padded on the right, lengths (B,) >= 1 on the CPU -> logits (B, classes)."""
        x = self.drop(self.embed(ids))
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        if self.config.pooling == "last":
            pooled = self._last(state)
        else:
            padded, _ = pad_packed_sequence(out, batch_first=True)  # zeros past each length
            if self.config.pooling == "mean":
                pooled = padded.sum(1) / lengths.to(padded.device, padded.dtype)[:, None]
            else:
                real = (torch.arange(padded.shape[1]) < lengths[:, None]).to(padded.device)
                pooled = padded.masked_fill(~real[:, :, None], float("-inf")).amax(1)
        return self.head(self.drop(pooled))  # type: ignore[no-any-return]

    def _last(self, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The top layer's final state of each direction, concatenated: (B, dirs*H).

        With packing, the forward final state is taken at each row's own last token and
        the backward one after reading back to its first; both come in batch order.
        """
        h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        dirs = 2 if self.config.bidirectional else 1
        return torch.cat(list(h[-dirs:]), dim=-1)

    def member_logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(members, B, classes): this one network's logits."""
        return self(ids, lengths)[None]

    def networks(self) -> list[TextClassifier]:
        return [self]


class Ensemble(nn.Module):
    """config.members TextClassifiers; the mean of their probabilities, as log-probabilities."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(TextClassifier(config) for _ in range(config.members))

    def member_logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(members, B, classes): each network's own logits, to train each by its own loss."""
        return torch.stack([member(ids, lengths) for member in self.members])

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, classes): log of the members' mean probabilities."""
        logits = self.member_logits(ids, lengths).float()
        return torch.logsumexp(torch.log_softmax(logits, -1), 0) - math.log(len(self.members))

    def networks(self) -> list[TextClassifier]:
        return list(self.members)  # type: ignore[arg-type]


Classifier = TextClassifier | Ensemble


def build(config: ClassifierConfig) -> Classifier:
    """The model a config describes: one network, or an ensemble of config.members (whose
    weights are named members.<k>.*; one network's keep the names they always had)."""
    return TextClassifier(config) if config.members == 1 else Ensemble(config)
