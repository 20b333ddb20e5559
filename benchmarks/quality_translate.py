"""BLEU of the translate task on Multi30k (en->fr by default) after a fixed training budget.

    python benchmarks/quality_translate.py --data-dir ../shared/data/multi30k_en_fr --budget 900
    python benchmarks/quality_translate.py --data-dir ... --budget 300 --set hidden=384 --set beam=5

Trains in-process with rnn_tasks.translate (the Problem and loop.fit a worker runs) on
all of train.{src,tgt}.gz, validating on val.{src,tgt}.gz (appended after the training
pairs and held out by val_fraction, exactly as a job would hold out its tail). --budget
is training seconds (evaluations excluded, as loop.fit counts them). Every eval_every
steps the curve records greedy BLEU on the first 200 validation pairs; at the end the
best checkpoint translates test_2016_flickr greedily and with a beam (with --set ema=D, the
final trained weights too, under without_ema), scored with
sacrebleu's corpus BLEU and chrF (default 13a tokenisation, detokenised output against
the raw references). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rnn_tasks import device as devices
from rnn_tasks import loop
from rnn_tasks.loop import Callbacks
from rnn_tasks.translate.decode import translate
from rnn_tasks.translate.metrics import bleu_chrf
from rnn_tasks.translate.spec import TranslateSpec
from rnn_tasks.translate.task import TranslateProblem


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode("utf-8").rstrip("\n").split("\n")


def _pairs(data_dir: Path, split: str, src: str, tgt: str) -> tuple[list[str], list[str]]:
    sources, targets = _lines(data_dir / f"{split}.{src}.gz"), _lines(data_dir / f"{split}.{tgt}.gz")
    assert len(sources) == len(targets), f"{split}: {len(sources)} vs {len(targets)} lines"
    return sources, targets


def _score(problem: TranslateProblem, sources: list[str], references: list[str], beam: int) -> dict[str, Any]:
    start = time.perf_counter()
    hyps = translate(problem.model, problem.src_tok, problem.tgt_tok, sources, beam=beam, cap=2 * problem.spec.max_len)
    return {**bleu_chrf(hyps, references), "decode_s": round(time.perf_counter() - start, 1), "sample": hyps[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--src", default="en")
    parser.add_argument("--tgt", default="fr")
    parser.add_argument("--test", default="test_2016_flickr")
    parser.add_argument("--budget", type=float, default=900.0, help="training seconds")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: one per usable core)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a TranslateSpec field")
    parser.add_argument("--save", type=Path, metavar="DIR", help="keep the run's checkpoints in DIR")
    args = parser.parse_args()
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}

    train_src, train_tgt = _pairs(args.data_dir, "train", args.src, args.tgt)
    val_src, val_tgt = _pairs(args.data_dir, "val", args.src, args.tgt)
    test_src, test_tgt = _pairs(args.data_dir, args.test, args.src, args.tgt)
    total = len(train_src) + len(val_src)
    # int(total * val_fraction) == len(val): exactly the official validation pairs are held out.
    fields: dict[str, Any] = {"val_fraction": (len(val_src) + 0.5) / total, "time_budget": args.budget,
                              "patience": None, "device": "cpu", **overrides}
    spec = TranslateSpec(data="benchmark/src", target_data="benchmark/tgt", **fields)

    dev = devices.resolve(spec.device)
    devices.configure(dev)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(spec.seed)
    wall = time.perf_counter()
    problem = TranslateProblem(spec, train_src + val_src, train_tgt + val_tgt, dev)
    prep_s = time.perf_counter() - wall
    assert problem.meta["val_pairs"] == len(val_src)

    curve: list[dict[str, Any]] = []
    clock = {"steps": 0, "start": 0.0, "evals": 0.0}  # steps taken; when fit began; seconds spent evaluating
    evaluate, loss = problem.evaluate, problem.loss

    def count_step(batch: Any) -> tuple[torch.Tensor, int]:
        clock["steps"] += 1
        return loss(batch)

    def evaluate_and_record() -> dict[str, float]:
        began = time.perf_counter()
        train_s = began - clock["start"] - clock["evals"]  # as loop.fit counts it: evaluations excluded
        figures = evaluate()
        took = time.perf_counter() - began
        clock["evals"] += took
        curve.append({"step": clock["steps"], "train_s": round(train_s, 1), "val_loss": round(figures["val_loss"], 4),
                      "bleu200": figures["bleu"], "chrf200": figures["chrf"], "eval_s": round(took, 1)})
        print(json.dumps({"curve": curve[-1]}), flush=True)
        return figures

    problem.loss = count_step  # type: ignore[method-assign]
    problem.evaluate = evaluate_and_record  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.save or Path(tmp)
        clock["start"] = time.perf_counter()
        summary = loop.fit(spec, problem, Callbacks(), folder)
        _, weights = loop.load(folder / loop.BEST, dev)
        own_weights = loop.load(folder / loop.LAST, dev)[1] if spec.ema else None  # not the average: the weights
    own: dict[str, Any] = {}
    if own_weights is not None:
        problem.model.load_state_dict(own_weights)
        with torch.no_grad():
            own = {"bleu_greedy": _score(problem, test_src, test_tgt, beam=1)["bleu"],
                   f"bleu_beam{spec.beam}": _score(problem, test_src, test_tgt, beam=spec.beam)["bleu"]}
    problem.model.load_state_dict(weights)
    with torch.no_grad():
        greedy = _score(problem, test_src, test_tgt, beam=1)
        beam = _score(problem, test_src, test_tgt, beam=spec.beam)
    print(json.dumps({
        "benchmark": "quality_translate",
        "pair": f"{args.src}-{args.tgt}",
        "test": args.test,
        "test_pairs": len(test_src),
        "budget_s": args.budget,
        f"bleu_beam{spec.beam}": beam["bleu"],
        f"chrf_beam{spec.beam}": beam["chrf"],
        "bleu_greedy": greedy["bleu"],
        "chrf_greedy": greedy["chrf"],
        "without_ema": own,  # the same run scored with its final trained weights instead of their average
        "decode_s": {"greedy": greedy["decode_s"], f"beam{spec.beam}": beam["decode_s"]},
        "samples": {"source": test_src[:3], "reference": test_tgt[:3], f"beam{spec.beam}": beam["sample"]},
        "best_val_loss": round(summary["best_val_loss"], 4),
        "steps": summary["steps"],
        "epochs": summary["epochs"],
        "tokens_per_s": summary["tokens_per_s"],
        "stopped_by": summary["stopped_by"],
        "parameters": summary["parameters"],
        "train_pairs": problem.meta["train_pairs"],
        "dropped_long": problem.meta["dropped_long"],
        "vocab": {"source": len(problem.src_tok), "target": len(problem.tgt_tok)},
        "prep_s": round(prep_s, 1),
        "wall_s": round(time.perf_counter() - wall, 1),
        "overrides": overrides,
        "spec": {k: v for k, v in spec.to_dict().items() if k not in ("data", "target_data")},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "curve": curve,
    }))


if __name__ == "__main__":
    main()
