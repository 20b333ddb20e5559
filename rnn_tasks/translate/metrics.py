"""Translation quality: sacrebleu's corpus BLEU and chrF, and teacher-forced cross-entropy.

BLEU and chrF use sacrebleu's defaults (13a tokenisation for BLEU, chrF with
character 6-grams, beta 2) on detokenised text, so the figures compare with
published ones on the same test set.
"""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu
import torch

from rnn_tasks.translate.data import Pair, make_batch, sorted_chunks
from rnn_tasks.translate.model import Seq2Seq, token_loss


def bleu_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (0-100) of hypotheses against one reference each."""
    if not hypotheses:
        return {"bleu": 0.0, "chrf": 0.0}
    refs = [list(references)]
    bleu = sacrebleu.corpus_bleu(list(hypotheses), refs)
    chrf = sacrebleu.corpus_chrf(list(hypotheses), refs)
    return {"bleu": round(float(bleu.score), 2), "chrf": round(float(chrf.score), 2)}


@torch.no_grad()
def cross_entropy(model: Seq2Seq, pairs: Sequence[Pair], pad_id: int, bos: int, eos: int,
                  batch_size: int = 64) -> float:
    """Mean teacher-forced cross-entropy per target token (nats), <eos> included."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for chunk in sorted_chunks([len(p[0]) for p in pairs], batch_size):
        batch = make_batch([pairs[i] for i in chunk], pad_id, bos, eos, device)
        logits = model(batch.src, batch.lengths, batch.tgt_in)
        total += float(token_loss(logits, batch.tgt_out, pad_id, reduction="sum"))
        count += batch.tokens
    return total / max(count, 1)
