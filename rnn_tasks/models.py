"""The recurrent building blocks every rnnq model shares."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_CELLS: dict[str, Callable[..., nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def recurrent(arch: str, inputs: int, hidden: int, layers: int = 1, dropout: float = 0.0,
              bidirectional: bool = False) -> nn.RNNBase:
    """The stacked, batch-first recurrent core every rnnq model uses (lstm | gru | rnn).
    Dropout applies between layers, so a single layer gets none (torch warns otherwise)."""
    return _CELLS[arch](inputs, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                        bidirectional=bidirectional, batch_first=True)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def open_forget_gates(rnn: nn.RNNBase) -> None:
    """Set an LSTM's forget-gate biases to 1, so gradients flow through time from the start
    (Jozefowicz et al. 2015); other cells are left as they are."""
    if not isinstance(rnn, nn.LSTM):
        return
    hidden = rnn.hidden_size
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if name.startswith("bias_ih"):
                param[hidden : 2 * hidden].fill_(1.0)
