"""The one checkpoint reader loads what earlier rnnq wrote: the language model's integer
format_version 1 (char) and 2 (word, with its tokenizer), and the tasks' "rnnq-task/1".

The fixtures were written by the code of 2026-11-27, before the formats became one
(tests/fixtures/make_legacy_checkpoints.py); legacy_expected.json is what that code
read back from them, generated text and predicted labels included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from rnn_tasks import checkpoint
from rnn_tasks.classify import task as classify
from rnn_tasks.lm import task as lm
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.loop import LAST, Callbacks
from rnn_tasks.spec import GenerateSpec, train_spec_from_dict

FIXTURES = Path(__file__).parent.parent / "fixtures"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURES / "legacy_expected.json").read_text())
LM_FILES = ["lm_format1.safetensors", "lm_format2_word.safetensors"]


@pytest.mark.parametrize("name", LM_FILES)
def test_old_lm_checkpoints_read_as_lm_task_checkpoints(name: str) -> None:
    expected = EXPECTED[name]
    ckpt = checkpoint.read(FIXTURES / name)
    assert ckpt.task == "lm" and ckpt.step == expected["step"]
    assert ckpt.spec == expected["spec"]
    assert isinstance(train_spec_from_dict(ckpt.spec), LMSpec)  # an old spec without "task" is the LM's
    model, tokenizer, _ = lm.load_model(FIXTURES / name)
    assert tokenizer.encode("the cat") == expected["tokens"]
    if expected["vocab"] is not None:
        assert tokenizer.chars == expected["vocab"]  # type: ignore[attr-defined]
    _, weights = checkpoint.load(FIXTURES / name)
    assert set(weights) == set(model.state_dict())


@pytest.mark.parametrize("name", LM_FILES)
def test_old_lm_checkpoints_generate_what_they_generated(name: str) -> None:
    spec = GenerateSpec(source="0" * 12, prompts=("the ",), max_tokens=12, greedy=True, device="cpu")
    assert lm.generate(FIXTURES / name, spec)["texts"] == EXPECTED[name]["greedy"]


def test_old_lm_checkpoint_evaluates() -> None:
    figures = lm.evaluate(FIXTURES / "lm_format1.safetensors", {"data": b"the cat sat on the mat. " * 4}, "cpu")
    assert torch.isfinite(torch.tensor(figures["loss"])) and figures["tokenizer"] == "char"


def test_old_task_checkpoint_reads_and_predicts_what_it_predicted() -> None:
    name = "classify_task1.safetensors"
    expected = EXPECTED[name]
    ckpt = checkpoint.read(FIXTURES / name)
    assert ckpt.task == "classify" and ckpt.step == expected["step"] and ckpt.spec == expected["spec"]
    assert ckpt.meta["labels"] == expected["labels"]
    out = classify.predict(FIXTURES / name, b"good fine day\nbad awful day\n", {}, "cpu")
    assert [p["label"] for p in out["predictions"]] == expected["predicted"]


def test_new_checkpoints_are_the_one_format_and_an_old_lm_run_resumes(tmp_path: Path) -> None:
    # A best checkpoint carries no optimizer state, so resuming from one restarts AdamW;
    # what matters is that the old header's step, tokenizer and position carry over.
    old = FIXTURES / "lm_format1.safetensors"
    spec = LMSpec.from_dict({**EXPECTED["lm_format1.safetensors"]["spec"], "max_steps": 5})
    text = ("the cat sat on the mat. the dog sat on the log. " * 8).encode()
    steps: list[int] = []
    result = lm.train(spec, {"data": text}, Callbacks(on_step=lambda m: steps.append(m.step)), tmp_path, old)
    assert result["steps"] == 5 and min(steps) > EXPECTED["lm_format1.safetensors"]["step"]
    new = checkpoint.read(tmp_path / LAST)
    assert new.format == checkpoint.FORMAT and new.task == "lm"
    assert new.meta["tokenizer"] == checkpoint.read(old).meta["tokenizer"]


def test_a_spec_without_a_task_is_the_language_models() -> None:
    # Specs in flight and job records from before "task" existed have none.
    old = {k: v for k, v in EXPECTED["lm_format1.safetensors"]["spec"].items() if k != "task"}
    spec = train_spec_from_dict(old)
    assert isinstance(spec, LMSpec) and spec.task == "lm" and spec.hidden == old["hidden"]
