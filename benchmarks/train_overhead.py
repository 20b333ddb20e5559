"""Training throughput of a job run by rnnq / a bare PyTorch loop, interleaved.

    python benchmarks/train_overhead.py [--rounds 3] [--seconds 30]

Starts a private local stack (its own redis-server on a free port and one worker, as
`rnnq up` does), then alternates: a bare loop (nn.Embedding -> nn.GRU -> nn.Linear,
AdamW, gradient clipping, state carried across windows) for --seconds, and an rnnq
training job with the same model and batch shape and the same time budget, sent
through the queue. rnnq's tokens/s is the job's own figure (evaluation excluded).
Prints one JSON object; the ratio is median(rnnq) / median(bare).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from workers import local, submit
from workers import settings as settings_mod
from workers.app import make_app
from workers.artifacts import LocalArtifactStore
from workers.jobstore import FINAL_STATES, JobStore

SHAPE = {"arch": "gru", "hidden": 512, "embed": 64, "layers": 1, "seq_len": 128, "batch_size": 32}  # the defaults


def corpus(chars: int = 400_000) -> str:
    g = torch.Generator().manual_seed(0)
    words = ["the", "queue", "worker", "trains", "a", "model", "on", "text", "and", "samples", "it"]
    idx = torch.randint(0, len(words), (chars // 4,), generator=g).tolist()
    return " ".join(words[i] for i in idx)[:chars]


def bare_loop(text: str, seconds: float) -> float:
    torch.manual_seed(0)
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text[:200_000]])
    b, t = SHAPE["batch_size"], SHAPE["seq_len"]
    emb = nn.Embedding(len(vocab), SHAPE["embed"])
    rnn = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[str(SHAPE["arch"])](SHAPE["embed"], SHAPE["hidden"],
                                                                           batch_first=True)
    head = nn.Linear(SHAPE["hidden"], len(vocab))
    params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    stream = ids[: (len(ids) // b) * b].view(b, -1)
    state, pos, tokens = None, 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if pos + t + 1 > stream.size(1):
            pos, state = 0, None
        x, y = stream[:, pos : pos + t], stream[:, pos + 1 : pos + t + 1]
        out, state = rnn(emb(x), state)
        loss = nn.functional.cross_entropy(head(out).reshape(-1, len(vocab)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        pos += t
        tokens += x.numel()
    return tokens / (time.perf_counter() - start)


def rnnq_job(s: settings_mod.Settings, text: str, seconds: float) -> float:
    store, app = JobStore(s.redis_url), make_app(s)
    spec = submit.build_spec("lm", {**SHAPE, "time_budget": seconds, "eval_every": 10**9, "patience": None})
    job = submit.submit_train(store, LocalArtifactStore(s.artifacts), app, spec, {"data": text.encode()})
    while (record := store.get(job.id)).state not in FINAL_STATES:
        time.sleep(0.5)
    if record.state != "succeeded":
        raise RuntimeError(f"benchmark job {job.id} {record.state}: {record.error}")
    return float(record.result["tokens_per_s"])  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, len(__import__("os").sched_getaffinity(0))))
    home = Path(tempfile.mkdtemp(prefix="rnnq-bench-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = dataclasses.replace(settings_mod.resolve(), home=home, local_port=port, local=True,
                            redis_url=f"redis://127.0.0.1:{port}/0", artifacts=home / "artifacts")
    text = corpus()
    local.up(s)
    bare, queued = [], []
    try:
        for _ in range(args.rounds):
            bare.append(bare_loop(text, args.seconds))
            queued.append(rnnq_job(s, text, args.seconds))
    finally:
        local.down(s)
    print(json.dumps({
        "benchmark": "train_overhead", "shape": SHAPE, "seconds_per_run": args.seconds,
        "bare_tokens_per_s": [round(v) for v in bare], "rnnq_tokens_per_s": [round(v) for v in queued],
        "ratio": round(statistics.median(queued) / statistics.median(bare), 4), "target": 0.98,
    }))


if __name__ == "__main__":
    main()
