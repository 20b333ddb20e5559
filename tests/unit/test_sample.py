"""Sampling: the O(1)-per-token stepper agrees with the full model; seeds reproduce."""

from __future__ import annotations

import pytest
import torch

from rnn_tasks.lm.model import LanguageModel, LMConfig
from rnn_tasks.lm.sampling import MODULE_STEP_BATCH, SampleOptions, _filter, generate
from rnn_tasks.tokenizer import CharTokenizer

TOK = CharTokenizer("abcdefgh ")


def _model(arch: str, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    return LanguageModel(LMConfig(vocab_size=len(TOK), arch=arch, embed=8, hidden=24, layers=2))


def _greedy_reference(model: LanguageModel, prompt: str, n: int) -> str:
    """Re-read the whole sequence for every new character: slow but obviously right."""
    ids = TOK.encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([ids]))
            nxt = int(logits[0, -1].argmax())
            ids.append(nxt)
            out.append(nxt)
    return TOK.decode(out)


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("copies", [1, MODULE_STEP_BATCH])  # the hand-written stepper, then nn.RNN steps
def test_stepping_matches_full_forward(arch: str, copies: int) -> None:
    model = _model(arch).eval()
    prompts = ["abc", "h", "gg fed"] * copies  # different lengths in one batch
    got = generate(model, TOK, prompts, SampleOptions(max_tokens=30, greedy=True))
    assert got == [_greedy_reference(model, p, 30) for p in prompts[:3]] * copies


def test_seeded_sampling_is_reproducible() -> None:
    model = _model("lstm")
    opts = SampleOptions(max_tokens=50, temperature=1.5, seed=123)
    first = generate(model, TOK, ["ab", "cd"], opts)
    assert generate(model, TOK, ["ab", "cd"], opts) == first
    other = generate(model, TOK, ["ab", "cd"], SampleOptions(max_tokens=50, temperature=1.5, seed=124))
    assert other != first
    assert all(len(t) == 50 for t in first)


def test_temperature_zero_and_top_k_one_are_greedy() -> None:
    model = _model("gru")
    greedy = generate(model, TOK, ["abc"], SampleOptions(max_tokens=20, greedy=True))
    assert generate(model, TOK, ["abc"], SampleOptions(max_tokens=20, temperature=0.0)) == greedy
    assert generate(model, TOK, ["abc"], SampleOptions(max_tokens=20, top_k=1, seed=5)) == greedy


def test_top_k_and_top_p_keep_the_right_candidates() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(_filter(logits, SampleOptions(top_k=2)))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(_filter(logits, SampleOptions(top_p=0.7)))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7 so the second is needed
    kept = torch.isfinite(_filter(logits, SampleOptions(top_p=0.4)))
    assert kept.tolist() == [[True, False, False, False]]  # the most likely always stays


def test_unknown_prompt_characters_are_an_error() -> None:
    with pytest.raises(ValueError, match="not in the vocabulary"):
        generate(_model("lstm"), TOK, ["xyz"], SampleOptions(max_tokens=5))
