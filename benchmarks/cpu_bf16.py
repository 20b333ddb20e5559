"""CPU training step time in fp32 and under bf16 autocast: the figures behind rnn_tasks.device's
BF16_MIN_HIDDEN.

    python benchmarks/cpu_bf16.py [--steps 10] [--warmup 3] [--rounds 2]

For LSTM and GRU language models from 16k to 4M parameters (one layer, embed 64, vocab
65, batch 32, 128-step windows), times one training step (forward, backward, AdamW) with
the threads rnn_tasks.device chooses for the model, in fp32 and under
torch.autocast("cpu", bfloat16), interleaved round by round. Prints one JSON object: the
CPU's bf16 unit (amx, avx512_bf16 or null), and per model its parameters, threads, each
round's median step in ms per precision, and fp32 / bf16 (above 1: bf16 is faster). The
figures need an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from typing import Any

import torch
from torch import nn

from rnn_tasks import device as devices

VOCAB, EMBED, BATCH, SEQ_LEN = 65, 64, 32, 128
HIDDEN = (64, 128, 192, 256, 384, 512, 768)


class LM(nn.Module):
    def __init__(self, arch: str, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.rnn = (nn.LSTM if arch == "lstm" else nn.GRU)(EMBED, hidden, batch_first=True)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.head(out)  # type: ignore[no-any-return]


def median_step(model: LM, bf16: bool, steps: int, warmup: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, VOCAB, (BATCH, SEQ_LEN))
    y = torch.randint(0, VOCAB, (BATCH, SEQ_LEN))
    times = []
    for i in range(warmup + steps):
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="fp32/bf16 pairs per model (default 2)")
    parser.add_argument("--arch", default="lstm,gru", help="comma-separated: lstm, gru")
    args = parser.parse_args()
    out: dict[str, Any] = {"cpu_bf16": devices.cpu_bf16(), "machine": platform.processor() or platform.machine(),
                           "torch": torch.__version__, "usable_cores": devices.usable_cores(),
                           "bf16_min_hidden": devices.BF16_MIN_HIDDEN, "models": []}
    for arch in args.arch.split(","):
        for hidden in HIDDEN:
            torch.manual_seed(0)
            model = LM(arch, hidden)
            parameters = sum(p.numel() for p in model.parameters())
            threads = devices.choose_threads(parameters, devices.usable_cores())
            torch.set_num_threads(threads)
            fp32, bf16 = [], []
            for _ in range(args.rounds):
                fp32.append(round(median_step(model, False, args.steps, args.warmup), 2))
                bf16.append(round(median_step(model, True, args.steps, args.warmup), 2))
            row = {"arch": arch, "hidden": hidden, "parameters": parameters, "threads": threads,
                   "fp32_ms": fp32, "bf16_ms": bf16, "speedup": round(sum(fp32) / sum(bf16), 2)}
            out["models"].append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
