"""Language model over any token ids (characters, words, BPE): Embedding -> stacked RNN/LSTM/GRU -> Linear."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from rnn_tasks.models import open_forget_gates, recurrent

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class LMConfig:
    """The shape of a LanguageModel; stored in every checkpoint so the model can be rebuilt."""

    vocab_size: int
    arch: str = "lstm"
    embed: int = 64
    hidden: int = 512
    layers: int = 1
    dropout: float = 0.0
    tie_weights: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LanguageModel(nn.Module):
    """Predicts the next token at every position of a (batch, time) id tensor.

    The name predates word and BPE tokenizers; the model itself never knew what its ids were.
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed)
        # nn.Dropout(0.0) still draws a mask every step in training mode; skip it.
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.rnn = recurrent(config.arch, config.embed, config.hidden, config.layers, config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.tie_weights:
            # nn.Embedding's N(0, 1) init, used as the output matrix, gives logits of size ~sqrt(hidden)
            # and a first loss far above uniform guessing; the small uniform init of PyTorch's
            # word_language_model example starts near uniform instead.
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)
            self.head.weight = self.embed.weight
        open_forget_gates(self.rnn)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (B, T) -> logits (B, T, vocab), new recurrent state."""
        x = self.drop(self.embed(ids))
        out, state = self.rnn(x, state)
        return self.head(self.drop(out)), state


def detach(state: State) -> State:
    """Cut the graph at a window boundary while keeping the values (truncated BPTT)."""
    if isinstance(state, tuple):
        return (state[0].detach(), state[1].detach())
    return state.detach()
