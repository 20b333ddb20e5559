"""Held-out perplexity and bits per character of word- and BPE-level LMs in a fixed time budget.

    python benchmarks/quality_lm.py --data ../shared/data/republic_clean.txt --budget 120 --tokenizer both
    python benchmarks/quality_lm.py --data ... --tokenizer word --set min_freq=3 --set hidden=384

Each tokenizer trains in-process with rnn_tasks.lm.task.train (the loop a worker runs) on the
first 90% of the corpus; the tokenizer is fitted on that part only. The best checkpoint
is then scored on the last 10% with rnn_tasks.lm.task.evaluate (the held-out text, read
as a new job would read it). Prints one JSON object.

Perplexity is per token, so a word model's and a BPE model's perplexities are NOT
comparable (different vocabularies, different numbers of tokens for the same text).
Bits per character divides the same total loss by the characters of the held-out text
and is comparable, with a caveat for word models: they skip whitespace and see rare
words only as <unk> (unk_rate), which makes their bpc somewhat flattering.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rnn_tasks.lm import task
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.loop import BEST, Callbacks, StepMetrics
from rnn_tasks.text import split_point

VAL_FRACTION = 0.1
# Sized for a few CPU minutes: a 256-wide GRU with tied embeddings; eval time is not in the budget.
COMMON: dict[str, Any] = {
    "arch": "gru",
    "hidden": 256,
    "embed": 256,
    "tie_weights": True,
    "seq_len": 64,
    "batch_size": 32,
    "lr": 3e-3,
    "warmup_steps": 10,  # few hundred steps at most in a CPU budget: do not spend them warming up
    "eval_every": 50,
    "patience": None,
    "val_fraction": VAL_FRACTION,
}
PER_TOKENIZER: dict[str, dict[str, Any]] = {
    "word": {"min_freq": 2},  # ~6.4k words on the Republic; the rest (~3% of held-out words) are <unk>
    "bpe": {"vocab_size": 2000},  # a small softmax: more steps in the budget than a word model gets
}


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run(kind: str, text: str, budget: float, overrides: dict[str, Any]) -> dict[str, Any]:
    spec = LMSpec.from_dict(
        {
            "data": "benchmark/corpus",
            **COMMON,
            **PER_TOKENIZER[kind],
            "tokenizer": kind,
            "time_budget": budget,
            **overrides,
        }
    )
    held_out = text[split_point(text, spec.val_fraction, whole_words=True):]
    curve: list[tuple[int, float]] = []

    def on_step(m: StepMetrics) -> None:
        if m.val_loss is not None:
            curve.append((m.step, m.val_loss))

    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = task.train(spec, {"data": text.encode()}, Callbacks(on_step=on_step), Path(tmp), None)
        figures = task.evaluate(Path(tmp) / BEST, {"data": held_out.encode()}, "cpu")
    return {
        "tokenizer": kind,
        "vocab_size": result["vocab_size"],
        "perplexity": round(figures["perplexity"], 2),
        "bpc": round(figures["bpc"], 4),
        "loss_per_token": round(figures["loss"], 4),
        "held_out_tokens": figures["tokens"],
        "held_out_chars": figures["characters"],
        "unk_rate": round(figures.get("unk_rate", 0.0), 4),
        "train_loss": round(result["train_loss"], 4),
        "steps": result["steps"],
        "epochs": round(result["epochs"], 3),
        "tokens_per_s": round(result["tokens_per_s"]),
        "parameters": result["parameters"],
        "wall_s": round(time.perf_counter() - wall, 1),
        "val_curve": [(s, round(v, 4)) for s, v in curve],
        "spec": {k: v for k, v in spec.to_dict().items() if k != "data"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per tokenizer")
    parser.add_argument("--tokenizer", choices=["word", "bpe", "both"], default="both")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a LMSpec field")
    args = parser.parse_args()
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    text = args.data.read_text(encoding="utf-8")
    kinds = ["word", "bpe"] if args.tokenizer == "both" else [args.tokenizer]
    print(
        json.dumps(
            {
                "benchmark": "quality_lm",
                "data": args.data.name,
                "budget_s": args.budget,
                "results": [run(kind, text, args.budget, overrides) for kind in kinds],
                "note": "perplexity is per token and not comparable across tokenizers; bpc is",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
