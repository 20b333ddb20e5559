"""Forecaster: an average of small recurrent members, each reading the lookback window.

    x (B, L, C) --rnn_k--> h_L (B, hidden) --dropout--> Linear_k --> (B, H)    k = 1..members
    forecast = mean over the members                                  (B, H)

One head for every step of the horizon (direct multi-step) avoids feeding forecasts
back as inputs, so errors do not compound through the recursion. Members start from
different random weights and are trained on the same batches, each by its own error
(`member_outputs`), so they stay independent and their average has less variance than
any one of them: on series of a few hundred rows, where one network's error depends a
lot on its initial weights, that is most of the gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rnn_tasks.models import open_forget_gates, recurrent


@dataclass(frozen=True)
class ForecasterConfig:
    """The shape of a Forecaster, rebuilt from a checkpoint's spec and meta."""

    inputs: int  # values per step: the transformed target and the features
    horizon: int
    arch: str = "gru"
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0
    members: int = 1


class _Member(nn.Module):
    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.rnn = recurrent(config.arch, config.inputs, config.hidden, config.layers, config.dropout)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.head = nn.Linear(config.hidden, config.horizon)
        open_forget_gates(self.rnn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(self.drop(out[:, -1])).float()


class Forecaster(nn.Module):
    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(_Member(config) for _ in range(config.members))

    def member_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C) -> each member's normalised transformed forecasts (members, B, H)."""
        return torch.stack([member(x) for member in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C) -> the members' mean forecast (B, H)."""
        return self.member_outputs(x).mean(0)


def upgrade_state_dict(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved before ensembles (rnn.*, head.*) as member 0's."""
    if any(k.startswith("members.") for k in weights):
        return weights
    return {f"members.0.{k}": v for k, v in weights.items()}
