"""Encoder-decoder with Luong attention (multiplicative, "general" score, no input feeding).

    source ids  ->  embed -> (bi)GRU/LSTM over the packed batch  ->  memory  (B, S, H)
                                                   final states  ->  decoder's initial state
    target ids  ->  embed -> GRU/LSTM  ->  d_t  (B, T, H)
                    score(d_t, m_s) = d_t . (W_a m_s), padding masked to -inf
                    c_t = softmax(score) @ memory
                    a_t = tanh(W_c [c_t; d_t])  ->  dropout  ->  logits (B, T, V)

Without input feeding the decoder's recurrence never reads the attention output, so
with teacher forcing the whole target sequence runs through the RNN in one call and
attention is two batched matmuls: several times faster on a CPU than a step loop. The
same `decode` serves a single step (T = 1) at inference time.

A bidirectional encoder gives each direction hidden // 2 units; concatenated, its states
and final state are hidden wide, which is what attention and the decoder expect.

Tying (Press and Wolf 2017): with tie_output the decoder's output layer is its input
embedding (a_t is hidden wide: when embed differs, a linear map without bias takes it to
embed first); with shared_vocab both languages read one vocabulary and the encoder's
embedding is the decoder's too. Tied weights are one Parameter, stored once in a
checkpoint (Seq2Seq.tied).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_tasks.models import recurrent

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # GRU/RNN: h; LSTM: (h, c); each (layers, B, H)


@dataclass(frozen=True)
class Seq2SeqConfig:
    src_vocab: int
    tgt_vocab: int
    arch: str = "gru"
    embed: int = 256
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.2
    bidirectional: bool = True
    attention: bool = True
    pad_id: int = 0
    tie_output: bool = False  # decoder output layer = decoder embedding
    shared_vocab: bool = False  # one vocabulary for both sides: encoder embedding = decoder embedding

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Memory(NamedTuple):
    """What the decoder attends to; rows are sentences (or sentence x beam)."""

    states: torch.Tensor  # (B, S, H) encoder outputs, zero at padding
    keys: torch.Tensor  # (B, S, H) W_a applied to states once per sentence
    mask: torch.Tensor  # (B, S) True at real tokens

    def select(self, rows: torch.Tensor) -> Memory:
        return Memory(self.states.index_select(0, rows), self.keys.index_select(0, rows), self.mask.index_select(0, rows))


def select_state(state: State, rows: torch.Tensor) -> State:
    """The decoder state of the given batch rows (dim 1)."""
    if isinstance(state, tuple):
        return state[0].index_select(1, rows), state[1].index_select(1, rows)
    return state.index_select(1, rows)


class Encoder(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.directions = 2 if config.bidirectional else 1
        self.embed = nn.Embedding(config.src_vocab, config.embed, padding_idx=config.pad_id)
        self.drop = nn.Dropout(config.dropout)
        self.rnn = recurrent(config.arch, config.embed, config.hidden // self.directions, config.layers, config.dropout,
                        config.bidirectional)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """src (B, S) padded, lengths (B,) >= 1 -> outputs (B, S, H) zero at padding, final state.

        Packing makes each sentence's states independent of the batch's longest one, and
        the backward direction start at the sentence's real last token, not at padding.
        """
        packed = pack_padded_sequence(self.drop(self.embed(src)), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        if isinstance(final, tuple):
            return outputs, (self._join(final[0]), self._join(final[1]))
        return outputs, self._join(final)

    def _join(self, h: torch.Tensor) -> torch.Tensor:
        """(layers * directions, B, H / directions) -> (layers, B, H): directions side by side."""
        if self.directions == 1:
            return h
        layers, batch = self.config.layers, h.size(1)
        return h.view(layers, 2, batch, -1).transpose(1, 2).reshape(layers, batch, -1)


class Decoder(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.embed = nn.Embedding(config.tgt_vocab, config.embed, padding_idx=config.pad_id)
        self.drop = nn.Dropout(config.dropout)
        self.rnn = recurrent(config.arch, config.embed, h, config.layers, config.dropout, False)
        if config.attention:
            self.score = nn.Linear(h, h, bias=False)  # W_a of the "general" score
            self.combine = nn.Linear(2 * h, h)  # W_c
        width = config.embed if config.tie_output else h
        self.project = nn.Linear(h, width, bias=False) if width != h else nn.Identity()
        self.out = nn.Linear(width, config.tgt_vocab)

    def memory(self, states: torch.Tensor, mask: torch.Tensor) -> Memory:
        keys = self.score(states) if self.config.attention else states
        return Memory(states, keys, mask)

    def forward(self, tokens: torch.Tensor, state: State, memory: Memory) -> tuple[torch.Tensor, State]:
        """tokens (B, T) -> logits (B, T, V) and the state after the last token."""
        d, state = self.rnn(self.drop(self.embed(tokens)), state)
        if self.config.attention:
            scores = torch.bmm(d, memory.keys.transpose(1, 2))  # (B, T, S)
            scores = scores.masked_fill(~memory.mask.unsqueeze(1), float("-inf"))
            context = torch.bmm(torch.softmax(scores, dim=-1), memory.states)  # (B, T, H)
            d = torch.tanh(self.combine(torch.cat([context, d], dim=-1)))
        return self.out(self.project(self.drop(d))), state


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.shared_vocab and config.src_vocab != config.tgt_vocab:
            raise ValueError(f"shared_vocab needs one vocabulary, got {config.src_vocab} and {config.tgt_vocab}")
        if config.tie_output:
            # nn.Embedding's N(0, 1) as the output matrix gives logits of size ~sqrt(embed); N(0, 1 / embed),
            # as the Transformer's tied embeddings start, gives logits near uniform (tied to the source side
            # too, the PyTorch LM example's U(-0.1, 0.1) learnt far slower at embed 32 on the unit tests' task)
            with torch.no_grad():
                nn.init.normal_(self.decoder.embed.weight, 0.0, config.embed**-0.5)
                self.decoder.embed.weight[config.pad_id].zero_()
        for name, source in self.tied().items():
            module, _, attr = name.rpartition(".")
            setattr(self.get_submodule(module), attr, self.get_parameter(source))

    def tied(self) -> dict[str, str]:
        """Weights that are another weight ({name: the weight it is}), by the config."""
        tied = {}
        if self.config.tie_output:
            tied["decoder.out.weight"] = "decoder.embed.weight"
        if self.config.shared_vocab:
            tied["encoder.embed.weight"] = "decoder.embed.weight"
        return tied

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[Memory, State]:
        states, final = self.encoder(src, lengths)
        return self.decoder.memory(states, src != self.config.pad_id), final

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for decoder inputs tgt_in (B, T) = <bos> y_1 .. y_{T-1}."""
        memory, state = self.encode(src, lengths)
        logits, _ = self.decoder(tgt_in, state, memory)
        return logits

    def forward_mixed(self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor,
                      forcing: float) -> torch.Tensor:
        """Like forward, but each step feeds the reference token with probability `forcing` and the
        model's own previous argmax otherwise (scheduled sampling); needs a step loop."""
        memory, state = self.encode(src, lengths)
        token = tgt_in[:, :1]
        steps = []
        for t in range(tgt_in.size(1)):
            logits, state = self.decoder(token, state, memory)
            steps.append(logits)
            if t + 1 < tgt_in.size(1):
                own = logits.argmax(-1)
                use_ref = torch.rand(own.shape, device=own.device) < forcing
                token = torch.where(use_ref, tgt_in[:, t + 1 : t + 2], own)
        return torch.cat(steps, dim=1)


def token_loss(logits: torch.Tensor, tgt_out: torch.Tensor, pad_id: int, smoothing: float = 0.0,
               reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over real target tokens (padding ignored), in fp32."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tgt_out.reshape(-1), ignore_index=pad_id,
                           label_smoothing=smoothing, reduction=reduction)
