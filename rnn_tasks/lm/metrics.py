"""Held-out figures of a language model: loss per token, perplexity, bits per character.

Perplexity is per token, so it depends on the tokenizer: a word model's perplexity and a
BPE model's are not comparable. Bits per character divides the same total loss by the
characters of the text instead, which puts char, word and BPE models on one scale
(with one caveat for word models: they do not encode whitespace and collapse rare words
into <unk>, so their bpc is a little flattering).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnn_tasks import device as devices
from rnn_tasks.lm import data
from rnn_tasks.lm.model import LanguageModel, State

EVAL_BATCH = 32  # parallel streams of held-out text (each starts from a zero state)
EVAL_SEQ_LEN = 256  # window length; the state is carried from one window to the next


@torch.no_grad()
def score(model: LanguageModel, ids: torch.Tensor, amp: bool = True) -> tuple[float, int]:
    """Total cross-entropy (nats) of predicting each token of `ids` from the ones before, and
    how many tokens were predicted. The model must be in eval mode; ids on its device."""
    if len(ids) < 2:
        raise data.CorpusTooShortError(f"need at least 2 tokens to evaluate, got {len(ids)}")
    dev = ids.device
    total = torch.zeros((), device=dev, dtype=torch.float64)
    count = 0
    state: State | None = None
    with devices.autocast(dev, devices.bf16(dev, amp, devices.shapes(model), unpacked=True)):
        for x, y in data.eval_windows(ids, EVAL_BATCH, EVAL_SEQ_LEN):
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum")
            total += loss  # summed on the device: one host sync at the end, not one per window
            count += y.numel()
    return float(total), count


def perplexity(loss: float) -> float:
    """exp(loss per token), infinite rather than an OverflowError for a diverged model."""
    return math.exp(loss) if loss < 700 else math.inf


def bits_per_char(loss: float, tokens: int, chars: int) -> float:
    """Mean loss per token (nats) over `tokens` tokens spelling `chars` characters -> bits per character.

    The first token of a text is never predicted; it is counted at the mean loss so a
    char model's bpc is exactly loss / ln 2.
    """
    return loss * tokens / max(chars, 1) / math.log(2)
