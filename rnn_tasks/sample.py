"""Sampling from a trained CharLM, one character per step with the state carried.

Prompts are read with the full cuDNN/MKL sequence kernel, one prompt at a time (so
prompts of different lengths need no padding); then all prompts advance together, one
fused cell call per layer per character. Per new token the work is O(1): no prompt is
re-read, and no Python-side sync happens until the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rnn_tasks.models import CharLM
from rnn_tasks.tokenizer import CharTokenizer


@dataclass(frozen=True)
class SampleOptions:
    max_tokens: int = 200
    temperature: float = 1.0  # 0 or greedy=True: always the most likely character
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None


class _Stepper:
    """Advances every layer of the model's RNN by one time step with ATen's fused cells."""

    def __init__(self, model: CharLM) -> None:
        rnn = model.rnn
        self.arch = model.config.arch
        self.layers = [
            tuple(getattr(rnn, f"{name}_l{i}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for i in range(rnn.num_layers)
        ]
        self.cell = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}[self.arch]
        if self.arch == "rnn" and rnn.nonlinearity == "relu":
            self.cell = torch.rnn_relu_cell

    def split(self, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> list:
        """nn.RNN's (layers, B, H) state -> per-layer states for the cells."""
        if self.arch == "lstm":
            h, c = state
            return [(h[i], c[i]) for i in range(len(self.layers))]
        return [state[i] for i in range(len(self.layers))]

    def __call__(self, x: torch.Tensor, states: list) -> torch.Tensor:
        for i, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.layers):
            if self.arch == "lstm":
                h, c = self.cell(x, states[i], w_ih, w_hh, b_ih, b_hh)
                states[i] = (h, c)
            else:
                h = self.cell(x, states[i], w_ih, w_hh, b_ih, b_hh)
                states[i] = h
            x = h
        return x


def _filter(logits: torch.Tensor, opts: SampleOptions) -> torch.Tensor:
    """Temperature, then top-k, then nucleus (top-p) filtering of (B, V) logits."""
    logits = logits / opts.temperature
    if opts.top_k is not None and opts.top_k < logits.size(-1):
        kth = torch.topk(logits, opts.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if opts.top_p is not None and opts.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = F.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens before it already reach top_p; the first stays.
        drop = probs.cumsum(dim=-1) - probs >= opts.top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


@torch.inference_mode()
def generate(model: CharLM, tokenizer: CharTokenizer, prompts: list[str], opts: SampleOptions) -> list[str]:
    """Continue each prompt by opts.max_tokens characters; returns the new text only."""
    model.eval()
    dev = next(model.parameters()).device
    generator = torch.Generator(device=dev)
    if opts.seed is not None:
        generator.manual_seed(opts.seed)
    else:
        generator.seed()
    greedy = opts.greedy or opts.temperature == 0.0
    stepper = _Stepper(model)

    last_logits, states = [], []
    for prompt in prompts:
        ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=dev)
        logits, state = model(ids)
        last_logits.append(logits[0, -1])
        states.append(state)
    logits = torch.stack(last_logits)
    layer_states = _stack_states(stepper, states)

    out = torch.empty(len(prompts), opts.max_tokens, dtype=torch.long, device=dev)
    for t in range(opts.max_tokens):
        if greedy:
            nxt = logits.argmax(dim=-1)
        else:
            probs = F.softmax(_filter(logits.float(), opts), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        out[:, t] = nxt
        if t + 1 < opts.max_tokens:
            h = stepper(model.embed(nxt), layer_states)
            logits = model.head(h)
    return [tokenizer.decode(row) for row in out.tolist()]


def _stack_states(stepper: _Stepper, states: list) -> list:
    """Per-prompt nn.RNN states -> per-layer batched states for the stepper."""
    if stepper.arch == "lstm":
        h = torch.cat([s[0] for s in states], dim=1)
        c = torch.cat([s[1] for s in states], dim=1)
        return stepper.split((h, c))
    return stepper.split(torch.cat(states, dim=1))
