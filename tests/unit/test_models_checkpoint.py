"""Model shapes per cell type; checkpoints rebuild the same model without pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rnn_tasks import checkpoint
from rnn_tasks.checkpoint import Checkpoint, CheckpointError
from rnn_tasks.lm.model import LanguageModel, LMConfig
from rnn_tasks.lm.task import load_model
from rnn_tasks.tokenizer import CharTokenizer


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 3])
def test_shapes(arch: str, layers: int) -> None:
    model = LanguageModel(LMConfig(vocab_size=11, arch=arch, embed=8, hidden=16, layers=layers, dropout=0.1))
    logits, state = model(torch.randint(0, 11, (4, 7)))
    assert logits.shape == (4, 7, 11)
    h = state[0] if arch == "lstm" else state
    assert h.shape == (layers, 4, 16)
    logits2, _ = model(torch.randint(0, 11, (4, 3)), state)  # state carries on
    assert logits2.shape == (4, 3, 11)


def test_tied_weights_share_one_matrix() -> None:
    model = LanguageModel(LMConfig(vocab_size=9, embed=16, hidden=16, tie_weights=True))
    assert model.head.weight is model.embed.weight


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("tie", [False, True])
def test_checkpoint_round_trip_reproduces_logits(tmp_path: Path, arch: str, tie: bool) -> None:
    config = LMConfig(vocab_size=12, arch=arch, embed=16, hidden=16, layers=2, tie_weights=tie)
    model = LanguageModel(config).eval()
    tied = {"head.weight": "embed.weight"} if tie else {}
    meta = Checkpoint(task="lm", spec={"arch": arch}, step=7, best_val_loss=1.5, tied=tied,
                      meta={"model": config.to_dict(), "tokenizer": CharTokenizer("abcdefghijkl").to_json()})
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randint(0, 12, (2, 5)))[0].sum().backward()
    optimizer.step()
    path = tmp_path / "ck.safetensors"
    checkpoint.save(path, meta, model, optimizer, torch.Generator().manual_seed(3).get_state())

    loaded, tokenizer, spec = load_model(path)
    ids = torch.randint(0, 12, (3, 9))
    assert torch.equal(model(ids)[0], loaded(ids)[0])
    assert loaded.config == config and spec == {"arch": arch}
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.chars == "abcdefghijkl"
    assert loaded.head.weight is loaded.embed.weight if tie else loaded.head.weight is not loaded.embed.weight
    read = checkpoint.read(path)
    assert read.step == 7 and read.best_val_loss == 1.5 and read.tied == tied

    state, rng = checkpoint.load_training_state(path)
    assert state is not None and rng is not None
    fresh = torch.optim.AdamW(loaded.parameters())
    fresh.load_state_dict(state)
    before, after = optimizer.state_dict()["state"], fresh.state_dict()["state"]
    assert before.keys() == after.keys()
    for index in before:
        assert torch.equal(before[index]["exp_avg"], after[index]["exp_avg"])
        assert torch.equal(before[index]["step"], after[index]["step"])


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    pickled = tmp_path / "evil.safetensors"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError):
        checkpoint.read(pickled)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not an rnnq checkpoint"):
        checkpoint.read(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.read(tmp_path / "missing.safetensors")
