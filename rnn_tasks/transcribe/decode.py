"""CTC decoding: greedy, and prefix beam search with optional language-model shallow fusion.

Greedy takes the most likely symbol of every frame, merges repeats and drops blanks.

Prefix beam search (Hannun et al. 2014, "First-pass large vocabulary continuous speech
recognition using bi-directional recurrent DNNs") keeps, for each of the `beam` best
label prefixes, the probability of all frame paths that spell it, split by whether the
path ends in a blank (pb) or in the prefix's last character (pnb):

    frame t, prefix p, symbol c         next prefix      adds
    blank                                p               (pb + pnb) * P(blank)
    c == last char of p                  p               pnb * P(c)           (a repeat merges)
                                         p + c           pb  * P(c) * F       (blank between)
    any other c                          p + c           (pb + pnb) * P(c) * F

F = LM(c | p) ** weight * exp(bonus) is the shallow-fusion factor (1 without an LM): a
language model's opinion of the next character, and a per-character bonus that offsets
the LM's preference for short outputs. Because many paths merge into one prefix, the
best prefix can differ from greedy's even at beam 1; on the peaked posteriors a trained
CTC model produces they agree (tested), and the known counterexample is tested too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from rnn_tasks.transcribe.data import BLANK

NEG_INF = -math.inf
PRUNE = math.log(1e-4)  # symbols less likely than this in a frame are not tried as extensions


def greedy(log_probs: torch.Tensor | np.ndarray) -> list[int]:
    """Best symbol per frame (T, V) -> merged repeats, blanks dropped."""
    best = np.asarray(log_probs).argmax(axis=1).tolist()
    out, last = [], BLANK
    for s in best:
        if s != last and s != BLANK:
            out.append(s)
        last = s
    return out


class Scorer(Protocol):
    """A language model over the decoder's symbols, scored incrementally."""

    def next_logprobs(self, prefixes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        """For each prefix, log P(symbol | prefix) for every symbol id (blank's entry unused)."""
        ...


def _lse(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def _add(beams: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], which: int, value: float) -> None:
    """Add probability `value` (log) to a prefix's blank-ending (0) or character-ending (1) mass."""
    slot = beams.setdefault(prefix, [NEG_INF, NEG_INF])
    slot[which] = _lse(slot[which], value)


def prefix_beam(log_probs: torch.Tensor | np.ndarray, beam: int, scorer: Scorer | None = None,
                weight: float = 0.0, bonus: float = 0.0) -> list[int]:
    """The most probable label sequence of CTC posteriors (T, V) found with `beam` prefixes
    (see the module docstring); with a scorer, shallow fusion with its weight and bonus."""
    lp = np.asarray(log_probs, dtype=np.float64)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (log pb, log pnb)
    for frame in lp:
        candidates = [int(c) for c in np.nonzero(frame > PRUNE)[0] if c != BLANK]
        lm = dict(zip(beams, scorer.next_logprobs(list(beams)), strict=True)) if scorer is not None else None
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _lse(pb, pnb)
            _add(nxt, prefix, 0, total + frame[BLANK])
            last = prefix[-1] if prefix else None
            for c in candidates:
                extra = bonus + (weight * lm[prefix][c] if lm is not None else 0.0)
                if c == last:
                    _add(nxt, prefix, 1, pnb + frame[c])
                    _add(nxt, prefix + (c,), 1, pb + frame[c] + extra)
                else:
                    _add(nxt, prefix + (c,), 1, total + frame[c] + extra)
        ranked = sorted(nxt.items(), key=lambda kv: _lse(kv[1][0], kv[1][1]), reverse=True)[:beam]
        beams = {p: (v[0], v[1]) for p, v in ranked}
    return list(max(beams.items(), key=lambda kv: _lse(kv[1][0], kv[1][1]))[0])


class CharLMScorer:
    """One of rnnq's own character language models (any finished `rnnq train` LM job) as a
    Scorer: the LM reads a prefix one character at a time from a context (a newline: the
    start of a line), and every prefix's recurrent state is cached, so extending a prefix
    by a character costs one LM step, batched over the prefixes of a frame."""

    def __init__(self, model: torch.nn.Module, lm_ids: Sequence[int], context_ids: Sequence[int],
                 device: torch.device) -> None:
        """lm_ids[s]: the LM's id of decoder symbol s (s >= 1); context_ids: what it reads first."""
        self.model, self.device = model, device
        self.gather = torch.tensor([0, *lm_ids[1:]], dtype=torch.long)
        self.cache: dict[tuple[int, ...], tuple[object, np.ndarray]] = {}
        self.lm_ids = list(lm_ids)
        with torch.no_grad():
            logits, state = model(torch.tensor([list(context_ids)], dtype=torch.long, device=device))
        self.cache[()] = (state, self._scores(logits[:, -1]))

    def reset(self) -> None:
        """Forget every prefix but the empty one (call between utterances)."""
        self.cache = {(): self.cache[()]}

    def _scores(self, logits: torch.Tensor) -> np.ndarray:
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()[0]
        out = logp[self.gather].numpy().astype(np.float64)
        out[BLANK] = 0.0
        return out  # type: ignore[no-any-return]

    @torch.no_grad()
    def next_logprobs(self, prefixes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        missing = set()
        for p in prefixes:
            while p not in self.cache and p not in missing:
                missing.add(p)
                p = p[:-1]
        for length in sorted({len(p) for p in missing}):  # parents first; in a beam search, one round
            batch = [p for p in missing if len(p) == length]
            states = [self.cache[p[:-1]][0] for p in batch]
            ids = torch.tensor([[self.lm_ids[p[-1]]] for p in batch], dtype=torch.long, device=self.device)
            logits, state = self.model(ids, _stack(states))
            for i, p in enumerate(batch):
                self.cache[p] = (_select(state, i), self._scores(logits[i : i + 1, -1]))
        return [self.cache[p][1] for p in prefixes]


def _stack(states: list[object]) -> object:
    if isinstance(states[0], tuple):
        return tuple(torch.cat([s[k] for s in states], dim=1) for k in range(2))  # type: ignore[index]
    return torch.cat(states, dim=1)  # type: ignore[arg-type]


def _select(state: object, i: int) -> object:
    if isinstance(state, tuple):
        return tuple(s[:, i : i + 1].contiguous() for s in state)
    return state[:, i : i + 1].contiguous()  # type: ignore[index]
