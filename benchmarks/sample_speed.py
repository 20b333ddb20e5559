"""Sampling speed of rnnq's generator: tokens/s from a 2x512 char-LSTM, batch 1 and 64.

    python benchmarks/sample_speed.py [--tokens 400] [--device cpu]

Beside it, the same model sampled the plain way (nn.LSTM called on one step at a time,
state carried), as a reference. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import torch

from rnn_tasks import device as devices
from rnn_tasks.lm.model import LanguageModel, LMConfig
from rnn_tasks.lm.sampling import SampleOptions, generate
from rnn_tasks.tokenizer import CharTokenizer


@torch.inference_mode()
def plain_loop(model: LanguageModel, batch: int, tokens: int, dev: torch.device) -> None:
    ids = torch.zeros(batch, 1, dtype=torch.long, device=dev)
    state = None
    out = []
    for _ in range(tokens):
        logits, state = model(ids, state)
        ids = torch.multinomial(torch.softmax(logits[:, -1], -1), 1)
        out.append(ids)
    torch.cat(out, 1).tolist()


def rate(fn: object, tokens: int, repeats: int = 5) -> float:
    """Best of several runs: this machine's timings are noisy, the best is the repeatable one."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return tokens / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=400, help="new characters per prompt")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    dev = devices.resolve(args.device)
    devices.configure(dev)
    torch.manual_seed(0)
    tok = CharTokenizer([chr(c) for c in range(32, 97)])  # 65 characters, like tinyshakespeare
    model = LanguageModel(LMConfig(vocab_size=len(tok), arch="lstm", embed=64, hidden=512, layers=2)).to(dev).eval()
    results = {}
    for batch in (1, 64):
        prompts = ["A" * 16] * batch
        opts = SampleOptions(max_tokens=args.tokens, temperature=1.0, seed=0)
        generate(model, tok, prompts[:1], SampleOptions(max_tokens=5))  # warm up kernels
        results[f"rnnq_batch{batch}_tokens_per_s"] = round(
            rate(partial(generate, model, tok, prompts, opts), batch * args.tokens)
        )
        results[f"plain_lstm_batch{batch}_tokens_per_s"] = round(
            rate(partial(plain_loop, model, batch, args.tokens, dev), batch * args.tokens)
        )
    print(json.dumps({"benchmark": "sample_speed", "model": "lstm 2x512, vocab 65", "device": str(dev),
                      "threads": torch.get_num_threads(), "tokens_per_prompt": args.tokens,
                      "targets": {"batch1": 400, "batch64": 12000}, **results}))


if __name__ == "__main__":
    main()
