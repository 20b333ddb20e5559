"""CPU training step time by intra-op thread count: the figures behind rnn_tasks.device.

    python benchmarks/threads.py [--steps 40] [--warmup 5]

For a tiny model (the size of a test or toy job) and a large one (the LM defaults,
two 512-wide layers), times one training step (forward, backward, AdamW) with the
threads rnn_tasks.device chooses, with 1 thread and with every usable core; each alone
and beside one busy process (a Python spin loop, started and stopped here). Prints one
JSON object: per model, per load, per thread setting, the median and p90 step in ms.
The figures need an otherwise idle machine: anything else running is a third load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rnn_tasks import device as devices

MODELS = {  # vocab, embed, hidden, layers, batch, seq_len
    "tiny": (64, 8, 24, 1, 4, 16),
    "large": (256, 64, 512, 2, 32, 128),
}


class LM(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.head(out)  # type: ignore[no-any-return]


def step_times(name: str, threads: int, steps: int, warmup: int) -> list[float]:
    vocab, embed, hidden, layers, batch, seq_len = MODELS[name]
    torch.manual_seed(0)
    model = LM(vocab, embed, hidden, layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, vocab, (batch, seq_len))
    y = torch.randint(0, vocab, (batch, seq_len))
    torch.set_num_threads(threads)
    times = []
    for i in range(warmup + steps):
        began = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - began)
    return times


@contextmanager
def busy_process() -> Iterator[None]:
    """One process spinning on a core, as a second job or a CLI loop would."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get scheduled
        yield
    finally:
        spinner.kill()
        spinner.wait()


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2),
            "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per setting (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--models", default="tiny,large", help="comma-separated: tiny, large")
    args = parser.parse_args()
    cores = devices.usable_cores()
    out: dict[str, Any] = {"usable_cores": cores, "torch": torch.__version__, "models": {}}
    for name in args.models.split(","):
        vocab, embed, hidden, layers, *_ = MODELS[name]
        parameters = sum(p.numel() for p in LM(vocab, embed, hidden, layers).parameters())
        chosen = devices.choose_threads(parameters, cores)
        settings = {"chosen": chosen, "one": 1, "all_cores": cores}
        figures: dict[str, Any] = {"parameters": parameters, "chosen_threads": chosen}
        for load in ("alone", "beside_busy_process"):
            with busy_process() if load != "alone" else _nothing():
                figures[load] = {label: summary(step_times(name, threads, args.steps, args.warmup))
                                 for label, threads in settings.items()}
        out["models"][name] = figures
    print(json.dumps(out, indent=2))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
