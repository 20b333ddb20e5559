"""Greedy and beam-search decoding, batched over sentences.

Both decode a batch step by step and drop a sentence from the batch as soon as it is
done, so one long output does not keep the finished ones computing. Each sentence has
its own step limit (`limits`), normally proportional to its source length.

Beam search follows fairseq's bookkeeping, per sentence and step:

    K alive hypotheses  x  V next tokens  ->  the 2K best continuations by summed log-prob
        <eos> among the first K of them   ->  finished, scored  log-prob / length
        the first K that are not <eos>     ->  the next K alive hypotheses
    a sentence is done once it has K finished hypotheses (or reaches its limit, when the
    alive ones are finished as they are); the best length-normalised one is the output.

With K = 1 the step picks the single most likely token, <eos> finishes the sentence, and
the batch shrinks exactly as greedy's does, so beam 1 returns greedy's output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rnn_tasks.tokenizer import Tokenizer
from rnn_tasks.translate.data import encode_sources, pad, sorted_chunks, special_ids
from rnn_tasks.translate.model import Memory, Seq2Seq, State, select_state


def limits_for(lengths: torch.Tensor, cap: int) -> torch.Tensor:
    """Output tokens allowed per sentence: twice the source length plus 10, at most cap."""
    return torch.clamp(lengths.cpu() * 2 + 10, max=cap)


@torch.no_grad()
def greedy(model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor, bos: int, eos: int,
           limits: torch.Tensor) -> list[list[int]]:
    """The most likely token at each step, until <eos> or the sentence's limit (<eos> not returned)."""
    memory, state = model.encode(src, lengths)
    batch = src.size(0)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    active = list(range(batch))  # original index of each row still decoding
    token = torch.full((batch, 1), bos, dtype=torch.long, device=src.device)
    step = 0
    while active:
        logits, state = model.decoder(token, state, memory)
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
        best = logp.topk(1, dim=-1).indices  # (b, 1); topk as beam search uses, for identical tie-breaking
        step += 1
        keep = []
        for row, (sentence, tok) in enumerate(zip(active, best[:, 0].tolist(), strict=True)):
            if tok == eos:
                continue
            outputs[sentence].append(tok)
            if step < int(limits[sentence]):
                keep.append(row)
        if len(keep) < len(active):
            rows = torch.tensor(keep, dtype=torch.long, device=src.device)
            memory, state, best = memory.select(rows), select_state(state, rows), best.index_select(0, rows)
            active = [active[r] for r in keep]
        token = best
    return outputs


class _Beams:
    """Alive hypotheses of the sentences still decoding: rows are sentence-major, K per sentence."""

    def __init__(self, memory: Memory, state: State, batch: int, k: int, bos: int, device: torch.device) -> None:
        rows = torch.arange(batch, device=device).repeat_interleave(k)
        self.memory, self.state = memory.select(rows), select_state(state, rows)
        self.k = k
        self.scores = torch.full((batch, k), float("-inf"), device=device)
        self.scores[:, 0] = 0.0  # all K start as the same <bos>: only one may expand at the first step
        self.tokens = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)
        self.active = list(range(batch))

    def keep(self, sentences: list[int]) -> None:
        """Keep only these positions (indices into self.active)."""
        device = self.scores.device
        idx = torch.tensor(sentences, dtype=torch.long, device=device)
        rows = (idx.unsqueeze(1) * self.k + torch.arange(self.k, device=device)).reshape(-1)
        self.memory, self.state = self.memory.select(rows), select_state(self.state, rows)
        self.scores, self.tokens = self.scores.index_select(0, idx), self.tokens.index_select(0, rows)
        self.active = [self.active[i] for i in sentences]


@torch.no_grad()
def beam_search(model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor, bos: int, eos: int,
                limits: torch.Tensor, k: int) -> list[list[int]]:
    """The best length-normalised hypothesis of a K-wide beam per sentence (<eos> not returned)."""
    memory, state = model.encode(src, lengths)
    batch, device = src.size(0), src.device
    beams = _Beams(memory, state, batch, k, bos, device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    step = 0
    while beams.active:
        n = len(beams.active)
        logits, beams.state = model.decoder(beams.tokens[:, -1:], beams.state, beams.memory)
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (n * k, V)
        vocab = logp.size(-1)
        candidates = (beams.scores.reshape(-1, 1) + logp).reshape(n, k * vocab)
        cand_scores, cand_index = candidates.topk(min(2 * k, k * vocab), dim=-1)  # sorted, best first
        cand_beam, cand_token = cand_index // vocab, cand_index % vocab
        step += 1
        is_eos = cand_token == eos
        rank = torch.arange(cand_token.size(1), device=device).expand_as(cand_token)
        for i, r in (is_eos & (rank < k)).nonzero().tolist():
            done = finished[beams.active[i]]
            if len(done) < k:
                row = i * k + int(cand_beam[i, r])
                done.append((float(cand_scores[i, r]) / step, beams.tokens[row, 1:].tolist()))
        # The first k candidates that are not <eos>: sort by rank with <eos> pushed behind all others.
        pick = (rank + is_eos * cand_token.size(1)).topk(k, dim=-1, largest=False).indices.sort(dim=-1).values
        parent = cand_beam.gather(1, pick)
        rows = (torch.arange(n, device=device).unsqueeze(1) * k + parent).reshape(-1)
        beams.scores = cand_scores.gather(1, pick)
        beams.tokens = torch.cat([beams.tokens.index_select(0, rows), cand_token.gather(1, pick).reshape(-1, 1)], 1)
        beams.state = select_state(beams.state, rows)
        keep = []
        for i, sentence in enumerate(beams.active):
            done = finished[sentence]
            if len(done) < k and step >= int(limits[sentence]):
                for j in range(k - len(done)):  # out of steps: the best alive hypotheses finish as they are
                    done.append((float(beams.scores[i, j]) / step, beams.tokens[i * k + j, 1:].tolist()))
            if len(done) < k:
                keep.append(i)
        if len(keep) < n:
            beams.keep(keep)
    return [max(done, key=lambda scored: scored[0])[1] for done in finished]


@torch.no_grad()
def translate(model: Seq2Seq, src_tok: Tokenizer, tgt_tok: Tokenizer, sentences: Sequence[str], *, beam: int,
              cap: int, batch_size: int = 64) -> list[str]:
    """Translations of sentences (greedy when beam == 1), decoded in batches of similar length."""
    model.eval()
    _, bos, eos = special_ids(tgt_tok)
    sources = encode_sources(src_tok, sentences)
    device = next(model.parameters()).device
    out = [""] * len(sources)
    for chunk in sorted_chunks([len(s) for s in sources], batch_size):
        rows = [sources[i] for i in chunk]
        src = pad(rows, special_ids(src_tok)[0]).to(device)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        limits = limits_for(lengths, cap)
        if beam == 1:
            ids = greedy(model, src, lengths, bos, eos, limits)
        else:
            ids = beam_search(model, src, lengths, bos, eos, limits, beam)
        for i, hyp in zip(chunk, ids, strict=True):
            out[i] = tgt_tok.decode(hyp)
    return out
