"""Held-out figures of a language model: loss per token, perplexity, bits per character.

Perplexity is per token, so it depends on the tokenizer: a word model's perplexity and a
BPE model's are not comparable. Bits per character divides the same total loss by the
characters of the text instead, which puts char, word and BPE models on one scale
(with one caveat for word models: they do not encode whitespace and collapse rare words
into <unk>, so their bpc is a little flattering).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rnn_tasks import checkpoint, corpus, data
from rnn_tasks import device as devices
from rnn_tasks.models import CharLM, State

EVAL_BATCH = 32  # parallel streams of held-out text (each starts from a zero state)
EVAL_SEQ_LEN = 256  # window length; the state is carried from one window to the next


@torch.no_grad()
def score(model: CharLM, ids: torch.Tensor, amp: bool = True) -> tuple[float, int]:
    """Total cross-entropy (nats) of predicting each token of `ids` from the ones before, and
    how many tokens were predicted. The model must be in eval mode; ids on its device."""
    if len(ids) < 2:
        raise data.CorpusTooShortError(f"need at least 2 tokens to evaluate, got {len(ids)}")
    dev = ids.device
    total = torch.zeros((), device=dev, dtype=torch.float64)
    count = 0
    state: State | None = None
    with devices.autocast(dev, amp):
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


def evaluate(checkpoint_path: Path, files: dict[str, bytes], device: str) -> dict[str, Any]:
    """Figures of a trained LM on the whole of files["data"] (UTF-8 text).

    Character models refuse text with characters they never saw (UnknownCharacterError);
    word models read unseen words as <unk>; BPE models read any text.
    """
    text = files["data"].decode("utf-8")
    dev = devices.resolve(device)
    devices.configure(dev)
    meta, model = checkpoint.load_model(checkpoint_path, dev)
    tokenizer = meta.tokenizer()
    ids = corpus.encode(tokenizer, text).to(dev)  # compact ids, a chunk at a time
    model.eval()
    total, count = score(model, ids, amp=bool(meta.spec.get("amp", True)))
    loss = total / count
    figures: dict[str, Any] = {
        "loss": loss,
        "perplexity": perplexity(loss),
        "bpc": bits_per_char(loss, len(ids), len(text)),
        "tokens": count,
        "characters": len(text),
        "tokenizer": tokenizer.kind,
        "vocab_size": len(tokenizer),
        "device": str(dev),
    }
    if tokenizer.unk_id is not None:
        # How much of the text the model saw only as <unk>: a perplexity is only as good as this is low.
        figures["unk_rate"] = float((ids == tokenizer.unk_id).float().mean())
    return figures
