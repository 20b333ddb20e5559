"""Sampling from a trained language model, one token per step with the state carried.

Prompts are read together by the sequence kernel (packed, so lengths may differ); then
all prompts advance together, one step of each layer per character. Per new token the work is O(1): no prompt is
re-read, and no Python-side sync happens until the end.

Prompts are encoded with the checkpoint's tokenizer: a char model refuses characters it
never saw (UnknownCharacterError), a word model reads unseen words as <unk> (and decode
drops it), a BPE model reads anything. A prompt with no tokens at all (whitespace for a
word model) starts from the zero state, as every training stream did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from rnn_tasks.lm.model import LanguageModel, State
from rnn_tasks.tokenizer import Tokenizer

MODULE_STEP_BATCH = 16  # from this many prompts on, CPU steps use nn.LSTM/GRU/RNN (measured)
STOP_CHECK_TOKENS = 256  # should_stop is asked between chunks of this many tokens


@dataclass(frozen=True)
class SampleOptions:
    max_tokens: int = 200
    temperature: float = 1.0  # 0 or greedy=True: always the most likely character
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None


class _Stepper:
    """Advances every layer of the model's RNN by one time step.

    Weights are pre-transposed once, and layer 0's input projection is a lookup in a
    (vocab, gates) table precomputed from the embedding, which saves a matmul per
    step. State is a list with one tensor (or (h, c) pair for LSTM) per layer.
    """

    def __init__(self, model: LanguageModel) -> None:
        rnn = model.rnn
        self.arch = model.config.arch
        self.relu = self.arch == "rnn" and rnn.nonlinearity == "relu"
        self.layers = rnn.num_layers
        w = {name: p.detach() for name, p in rnn.named_parameters()}
        self.w_ih = [w[f"weight_ih_l{i}"].t().contiguous() for i in range(self.layers)]
        self.w_hh = [w[f"weight_hh_l{i}"].t().contiguous() for i in range(self.layers)]
        self.b_ih = [w[f"bias_ih_l{i}"] for i in range(self.layers)]
        self.b_hh = [w[f"bias_hh_l{i}"] for i in range(self.layers)]
        self.table = torch.addmm(self.b_ih[0], model.embed.weight.detach(), self.w_ih[0])

    def split(self, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> list:
        """nn.RNN's (layers, B, H) state -> per-layer states."""
        if self.arch == "lstm":
            h, c = state
            return [(h[i], c[i]) for i in range(self.layers)]
        return [state[i] for i in range(self.layers)]

    def __call__(self, tokens: torch.Tensor, states: list) -> torch.Tensor:
        """Feed one token per row; returns the top layer's new hidden state."""
        x = tokens  # layer 0 reads the token ids through the table
        for i in range(self.layers):
            gi = self.table[tokens] if i == 0 else torch.addmm(self.b_ih[i], x, self.w_ih[i])
            if self.arch == "lstm":
                h, c = states[i]
                gates = gi.addmm_(h, self.w_hh[i]).add_(self.b_hh[i])
                in_gate, forget, cell, out = gates.chunk(4, 1)
                c = torch.sigmoid(forget) * c + torch.sigmoid(in_gate) * torch.tanh(cell)
                h = torch.sigmoid(out) * torch.tanh(c)
                states[i] = (h, c)
            elif self.arch == "gru":
                h = states[i]
                gh = torch.addmm(self.b_hh[i], h, self.w_hh[i])
                i_r, i_z, i_n = gi.chunk(3, 1)
                h_r, h_z, h_n = gh.chunk(3, 1)
                reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                new = torch.tanh(i_n + reset * h_n)
                h = new + update * (h - new)
                states[i] = h
            else:
                pre = gi.addmm_(states[i], self.w_hh[i]).add_(self.b_hh[i])
                h = torch.relu(pre) if self.relu else torch.tanh(pre)
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
def generate(model: LanguageModel, tokenizer: Tokenizer, prompts: list[str], opts: SampleOptions,
             should_stop: Callable[[], bool] = lambda: False) -> list[str]:
    """Continue each prompt by opts.max_tokens tokens; returns the new text only.

    should_stop is asked every STOP_CHECK_TOKENS tokens; when it says yes, the texts
    end where they are (shorter than max_tokens)."""
    model.eval()
    dev = next(model.parameters()).device
    generator = torch.Generator(device=dev)
    if opts.seed is not None:
        generator.manual_seed(opts.seed)
    else:
        generator.seed()
    greedy = opts.greedy or opts.temperature == 0.0

    encoded = [tokenizer.encode(p) for p in prompts]
    logits, state = _read_prompts(model, encoded, dev)
    # Small batches on CPU: the hand-written stepper (no per-call setup, pre-transposed
    # weights). Large batches and GPUs: the library's fused kernel, one step per call.
    if dev.type == "cpu" and len(prompts) < MODULE_STEP_BATCH:
        stepper = _Stepper(model)
        layer_states = stepper.split(state)

        def step(tokens: torch.Tensor) -> torch.Tensor:
            return model.head(stepper(tokens, layer_states))
    else:
        def step(tokens: torch.Tensor) -> torch.Tensor:
            nonlocal state
            out, state = model.rnn(model.embed(tokens[:, None]), state)
            return model.head(out[:, 0])


    out = torch.empty(len(prompts), opts.max_tokens, dtype=torch.long, device=dev)
    for t in range(opts.max_tokens):
        if t and t % STOP_CHECK_TOKENS == 0 and should_stop():
            out = out[:, :t]
            break
        if greedy:
            nxt = logits.argmax(dim=-1)
        else:
            probs = F.softmax(_filter(logits.float(), opts), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        out[:, t] = nxt
        if t + 1 < opts.max_tokens:
            logits = step(nxt)
    if tokenizer.kind == "char":
        return [tokenizer.decode(row) for row in out.tolist()]
    return [_continuation(tokenizer, prompt, row) for prompt, row in zip(encoded, out.tolist(), strict=True)]


def _continuation(tokenizer: Tokenizer, prompt: list[int], new: list[int]) -> str:
    """The text the new tokens add after the prompt.

    Decoding them with the prompt puts the space between prompt and continuation where
    the tokenizer would (a word model's "said" + "the" -> " the", but "said" + "," -> ",")
    and completes a character whose UTF-8 bytes a BPE model split across the boundary.
    """
    if not prompt:
        return tokenizer.decode(new)
    head = tokenizer.decode(prompt)
    whole = tokenizer.decode(prompt + new)
    return whole[len(head) :] if whole.startswith(head) else tokenizer.decode(new)


def _read_prompts(model: LanguageModel, encoded: list[list[int]], dev: torch.device) -> tuple[torch.Tensor, State]:
    """All prompts in one packed sequence call: last-position logits and the state.

    Packing lets prompts of different lengths share one kernel call; each prompt's
    final state is taken at its own last character, so no padding leaks in. In eval
    mode the top layer's final hidden state is the last output, so it feeds the head.
    """
    # An empty prompt reads one dummy token (packing needs a length of 1) whose state is then zeroed.
    seqs = [torch.tensor(ids or [0], dtype=torch.long, device=dev) for ids in encoded]
    lengths = torch.tensor([len(s) for s in seqs])
    padded = pad_sequence(seqs, batch_first=True)
    packed = pack_padded_sequence(model.embed(padded), lengths, batch_first=True, enforce_sorted=False)
    _, state = model.rnn(packed)
    empty = [i for i, ids in enumerate(encoded) if not ids]
    if empty:
        for part in state if isinstance(state, tuple) else (state,):
            part[:, empty] = 0.0
    top = state[0][-1] if isinstance(state, tuple) else state[-1]
    return model.head(top), state
