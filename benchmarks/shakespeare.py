"""Validation loss (nats/char) reached by rnnq's default config in a fixed time budget.

    python benchmarks/shakespeare.py --data ../shared/data/tinyshakespeare.txt --budget 180
    python benchmarks/shakespeare.py --data ... --set hidden=384 --set lr=0.005

Trains in-process with rnn_tasks.lm.task.train (the same loop a worker runs) on the corpus with
its last 10% held out, and prints one JSON object. --set overrides a LMSpec field.

Two scores of the best checkpoint on the whole held-out part: `best_val_loss`, the job's own
(each character predicted from everything before it, the state carried across windows), and
`block64_val_loss`, the held-out text cut into independent 65-character blocks, each scored
from a zero state (64 predictions a block), as nanoGPT's evaluation scores blocks of
block_size with no context from before them. Where the job trained under bf16 autocast
(rnn_tasks.device), `best_val_loss_fp32` scores the same checkpoint again in fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from rnn_tasks.lm.metrics import score
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.lm.task import load_model, prepare_corpus, train
from rnn_tasks.loop import BEST, Callbacks, StepMetrics

BLOCK = 64


@torch.no_grad()
def held_out_scores(checkpoint: Path, spec: LMSpec, text: str) -> tuple[float, float]:
    """The checkpoint on the held-out part, in fp32, nats per character: (block64, the job's
    own score again). The job scored under the autocast it trained with (bf16 on CUDA and
    on AMX or AVX512-BF16 CPUs for a wide LSTM; rnn_tasks.device)."""
    model, tokenizer, _ = load_model(checkpoint)
    _, _, val_ids, _ = prepare_corpus(spec, text, tokenizer)
    blocks = val_ids[: len(val_ids) // (BLOCK + 1) * (BLOCK + 1)].long().view(-1, BLOCK + 1)
    total, count = 0.0, 0
    for chunk in blocks.split(256):
        logits, _ = model(chunk[:, :-1])
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                                        chunk[:, 1:].reshape(-1), reduction="sum"))
        count += chunk[:, 1:].numel()
    whole, predicted = score(model, val_ids.long(), amp=False)
    return total / count, whole / predicted


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    spec = LMSpec(data="benchmark/corpus", time_budget=args.budget, **{k: _value(v) for k, v in overrides.items()})
    text = args.data.read_text(encoding="utf-8")
    wall = time.perf_counter()
    curve: list[tuple[int, float]] = []

    def on_step(m: StepMetrics) -> None:
        if m.val_loss is not None:
            curve.append((m.step, m.val_loss))

    with tempfile.TemporaryDirectory() as out:
        result = train(spec, {"data": text.encode("utf-8")}, Callbacks(on_step=on_step), Path(out))
        blocks, fp32 = held_out_scores(Path(out) / BEST, spec, text)
    print(
        json.dumps(
            {
                "benchmark": "shakespeare",
                "budget_s": args.budget,
                "val_loss": round(result["val_loss"], 4),
                "best_val_loss": round(result["best_val_loss"], 4),
                "block64_val_loss": round(blocks, 4),
                "best_val_loss_fp32": round(fp32, 4),
                "precision": result["precision"],
                "train_loss": round(result["train_loss"], 4),
                "steps": result["steps"],
                "epochs": round(result["epochs"], 3),
                "tokens_per_s": round(result["tokens_per_s"]),
                "wall_s": round(time.perf_counter() - wall, 1),
                "overrides": overrides,
                "spec": {k: v for k, v in spec.to_dict().items() if k != "data"},
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(),
                "val_curve": [(s, round(v, 4)) for s, v in curve],
            }
        )
    )


if __name__ == "__main__":
    main()
