"""Forecaster: stacked RNN/LSTM/GRU over the lookback window -> Linear -> all H steps at once.

    x (B, L, C) --rnn--> h_L (B, hidden) --dropout--> Linear --> (B, H)

One head for every step of the horizon (direct multi-step) avoids feeding forecasts
back as inputs, so errors do not compound through the recursion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rnn_tasks.models import recurrent


@dataclass(frozen=True)
class ForecasterConfig:
    """The shape of a Forecaster, rebuilt from a checkpoint's spec and meta."""

    inputs: int  # values per step: the transformed target and the features
    horizon: int
    arch: str = "gru"
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0


class Forecaster(nn.Module):
    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = recurrent(config.arch, config.inputs, config.hidden, config.layers, config.dropout)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.head = nn.Linear(config.hidden, config.horizon)
        if config.arch == "lstm":
            # A forget-gate bias of 1 lets gradients flow through the window from the start.
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        param[config.hidden : 2 * config.hidden].fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C) -> normalised transformed forecasts (B, H)."""
        out, _ = self.rnn(x)
        return self.head(self.drop(out[:, -1])).float()
