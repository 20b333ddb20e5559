"""bf16 autocast on a CPU: only with bf16 instructions (AMX or AVX512-BF16), only for a task
whose sequences are never packed (the language model), only for an LSTM layer wide enough
to pay for the casts, never when a spec turns amp off. The figures behind the rule are in
benchmarks/cpu_bf16.py."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rnn_tasks import device as devices
from rnn_tasks.device import BF16_MIN_HIDDEN
from rnn_tasks.lm import task
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.loop import BEST

CPU = torch.device("cpu")
NATIVE_BF16 = devices.cpu_bf16() is not None


@pytest.fixture(autouse=True)
def keep_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _dtype_under_autocast(enabled: bool) -> torch.dtype:
    layer = torch.nn.Linear(8, 8)
    with devices.autocast(CPU, enabled):
        return layer(torch.ones(2, 8)).dtype


def _lstm(hidden: int, bidirectional: bool = False) -> dict[str, torch.Size]:
    return devices.shapes(torch.nn.LSTM(16, hidden, bidirectional=bidirectional))


def test_the_widest_lstm_layer_is_read_from_weight_names_and_shapes() -> None:
    assert devices.widest_lstm(_lstm(300, bidirectional=True)) == 300
    assert devices.widest_lstm(devices.shapes(torch.nn.LSTM(8, 300, 2))) == 300
    assert devices.widest_lstm(devices.shapes(torch.nn.GRU(8, 1024))) == 0  # (3H, H): a GRU
    assert devices.widest_lstm(devices.shapes(torch.nn.Linear(2048, 512))) == 0
    ensemble = torch.nn.ModuleDict({"a": torch.nn.LSTM(8, 64), "b": torch.nn.LSTM(8, 512)})
    assert devices.widest_lstm(devices.shapes(ensemble)) == 512


@pytest.mark.parametrize("model", [torch.nn.Embedding(100_000, 64), torch.nn.GRU(64, 1024),
                                   torch.nn.LSTM(64, 64, bidirectional=True)])
def test_models_without_a_wide_lstm_stay_in_fp32_whatever_the_cpu(model: torch.nn.Module) -> None:
    """Large in parameters is not enough: a classifier's embedding and 64-wide biLSTMs ran
    slower in bf16, and a GRU gains too little for the precision it gives up."""
    assert not devices.bf16(CPU, True, devices.shapes(model), unpacked=True)


def test_amp_off_is_fp32_everywhere() -> None:
    assert not devices.bf16(CPU, False, _lstm(1024), unpacked=True)
    assert not devices.bf16(torch.device("cuda"), False, _lstm(1024), unpacked=True)
    assert devices.bf16(torch.device("cuda"), True, {}, unpacked=False)  # CUDA: amp alone decides
    assert _dtype_under_autocast(False) == torch.float32


def test_without_bf16_instructions_a_wide_lstm_stays_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_bf16", lambda: None)  # AVX2 AMD and pre-Cooper Lake Intel machines
    assert not devices.bf16(CPU, True, _lstm(1024), unpacked=True)


@pytest.mark.parametrize("probe", ["_is_amx_tile_supported", "_is_avx512_bf16_supported"])
def test_either_bf16_unit_is_enough(monkeypatch: pytest.MonkeyPatch, probe: str) -> None:
    """torch's own CPU probes decide; AMX is named first, being the faster of the two."""
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda found=(name == probe): found)
    assert devices.cpu_bf16() == {"_is_amx_tile_supported": "amx", "_is_avx512_bf16_supported": "avx512_bf16"}[probe]
    assert devices.bf16(CPU, True, _lstm(BF16_MIN_HIDDEN), unpacked=True)
    monkeypatch.setattr(torch.cpu, probe, lambda: False)
    assert devices.cpu_bf16() is None


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has neither AMX nor AVX512-BF16")
def test_with_native_bf16_a_wide_unpacked_lstm_computes_in_bf16() -> None:
    assert devices.bf16(CPU, True, _lstm(BF16_MIN_HIDDEN, bidirectional=True), unpacked=True)
    assert _dtype_under_autocast(True) == torch.bfloat16
    assert not devices.bf16(CPU, True, _lstm(BF16_MIN_HIDDEN - 1), unpacked=True)
    assert not devices.bf16(CPU, True, _lstm(1024), unpacked=False)  # a task that packs its sequences


def test_only_the_language_model_declares_unpacked_sequences() -> None:
    from rnn_tasks.spec import TASKS, train_spec_class

    assert {task for task in TASKS if train_spec_class(task).CPU_BF16} == {"lm"}


def _classifier_result(tmp_path: Path) -> dict[str, Any]:
    from rnn_tasks.classify.spec import ClassifySpec
    from rnn_tasks.classify.task import train as train_classifier

    rows = "".join(f"{w} {v} it,{'pos' if v == 'love' else 'neg'}\n" for w in ("i", "we", "they", "you")
                   for v in ("love", "hate") for _ in range(8))
    spec = ClassifySpec(data="inputs/x", hidden=BF16_MIN_HIDDEN, embed=16, ensemble=1, max_steps=3, eval_every=3,
                        text_column="0", label_column="1", min_freq=1)
    return train_classifier(spec, {"data": rows.encode()}, None, tmp_path, None)


@pytest.fixture
def text() -> str:
    lines = [f"the {w} {v} the {o}.\n" for w in ("cat", "dog", "bird", "fish") for v in ("sees", "eats", "likes")
             for o in ("mat", "log", "sun", "sea", "hat")]
    return "".join(lines * 12)


@pytest.mark.parametrize("amp", [True, False])
def test_a_large_language_model_trains_and_says_its_precision(text: str, tmp_path: Path, amp: bool) -> None:
    """A wide LSTM LM: bf16 where this CPU has AMX or AVX512-BF16 (and amp is on), fp32 elsewhere; either
    way the loss falls and the best checkpoint scores the same in fp32 as the job did."""
    spec = LMSpec(data="corpora/x", arch="lstm", hidden=384, seq_len=32, batch_size=16, lr=0.01, max_steps=40,
                  eval_every=20, amp=amp)
    result = task.train(spec, {"data": text.encode()}, None, tmp_path)
    assert result["precision"] == ("bf16" if NATIVE_BF16 and amp else "fp32")
    assert result["val_loss"] < 0.5 * math.log(len(set(text)))
    # The job's own figure, computed under autocast, against the checkpoint rescored in fp32.
    model, tokenizer, _ = task.load_model(tmp_path / BEST)
    _, _, val_ids, _ = task.prepare_corpus(spec, text, tokenizer)
    from rnn_tasks.lm.metrics import score

    total, count = score(model.eval(), val_ids.long(), amp=False)
    assert total / count == pytest.approx(result["best_val_loss"], abs=0.02)


def test_a_classifier_with_wide_lstms_trains_in_fp32_even_after_a_wide_lm(text: str, tmp_path: Path) -> None:
    """Its batches are packed, whose kernels ran slower in bf16 even 256 wide; and what one
    model decided does not carry to the next in the same process (a speech job loads a
    wide LSTM LM for its beam search beside its own packed network)."""
    lm = LMSpec(data="corpora/x", arch="lstm", hidden=BF16_MIN_HIDDEN, seq_len=16, batch_size=8, max_steps=2,
                eval_every=2)
    assert task.train(lm, {"data": text.encode()}, None, tmp_path / "lm")["precision"] == ("bf16" if NATIVE_BF16 else "fp32")
    task.load_model(tmp_path / "lm" / BEST)
    assert _classifier_result(tmp_path / "classify")["precision"] == "fp32"
