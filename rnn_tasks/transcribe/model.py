"""The acoustic model: log-mel frames -> per-frame log-probabilities over characters + blank.

    x        (B, T, M)       zero-padded past each utterance's length
    conv     Conv1d(M -> C, k5, stride s), ReLU, Conv1d(C -> C, k3), ReLU     (B, T', C)
             T' = (T - 1) // s + 1; every conv output past T' is zeroed, so the next
             layer reads the same zeros a lone utterance would be padded with
    rnn      bidirectional LSTM/GRU over packed sequences (never reads padding)
    head     Linear(2H -> characters + 1), log_softmax                          (B, T', V)

So an utterance gets the same outputs whatever else shares its batch (tested).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_tasks.models import recurrent


@dataclass(frozen=True)
class AcousticConfig:
    """The model's shape; stored in checkpoint meta so predict can rebuild it."""

    n_mels: int
    n_symbols: int  # characters + the blank
    arch: str = "lstm"
    channels: int = 192
    hidden: int = 192
    layers: int = 3
    dropout: float = 0.1
    subsample: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AcousticModel(nn.Module):
    config: AcousticConfig

    def __init__(self, config: AcousticConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv1d(config.n_mels, config.channels, 5, stride=config.subsample, padding=2)
        self.conv2 = nn.Conv1d(config.channels, config.channels, 3, padding=1)
        self.rnn = recurrent(config.arch, config.channels, config.hidden, config.layers, config.dropout, True)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.head = nn.Linear(2 * config.hidden, config.n_symbols)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames per utterance: (T + 2*2 - 5) // s + 1."""
        return (lengths - 1) // self.config.subsample + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, M), lengths (B,) on the CPU -> log-probs (B, T', V) in float32, out lengths (B,) on the CPU."""
        out_len = self.out_lengths(lengths)
        h = torch.relu(self.conv1(x.transpose(1, 2)))  # (B, C, T')
        real = (torch.arange(h.shape[2]) < out_len[:, None]).to(h.device)[:, None, :]
        h = h * real
        h = torch.relu(self.conv2(h)) * real
        packed = pack_padded_sequence(h.transpose(1, 2), out_len, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True, total_length=h.shape[2])
        return torch.log_softmax(self.head(self.drop(padded)).float(), dim=-1), out_len
