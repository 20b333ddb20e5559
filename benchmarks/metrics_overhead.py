"""Training throughput with the worker's Prometheus metrics on / off, interleaved.

    python benchmarks/metrics_overhead.py [--rounds 4] [--seconds 20] [--set hidden=128 ...]

Runs rnn_tasks.lm.task.train in this process with the default model (or --set overrides),
alternating a run whose on_step feeds the worker's metrics exactly as a job does
(workers.metrics.TrainingMeter, in prometheus_client's multiprocess mode writing to a
scratch PROMETHEUS_MULTIPROC_DIR, plus job_started/job_ended) with a run whose on_step
does nothing. Prints one JSON object; ratio = median(on) / median(off). Target >= 0.99.

Because whole-run throughput on a shared 2-core machine varies by more than 1%, it
also times the metrics work itself: the cost of one progress report's metric updates
(TrainingMeter.report, with the step histogram fed for a report's worth of steps), and
the share of training time that is at one report per REPORT_SECONDS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="rnnq-metrics-")  # before prometheus_client loads

import torch

from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.lm.task import train
from rnn_tasks.loop import REPORT_SECONDS, Callbacks, StepMetrics
from workers import metrics


def corpus(chars: int = 400_000) -> str:
    g = torch.Generator().manual_seed(0)
    words = ["the", "queue", "worker", "trains", "a", "model", "on", "text", "and", "samples", "it"]
    idx = torch.randint(0, len(words), (chars // 4,), generator=g).tolist()
    return " ".join(words[i] for i in idx)[:chars]


def one_run(spec: LMSpec, text: str, with_metrics: bool) -> float:
    on_step = lambda report: None
    began = time.monotonic()
    if with_metrics:
        metrics.job_started("train", "bench", "bench@host", 0.1)
        meter = metrics.TrainingMeter("train", "bench", "bench@host")

        def on_step(report: StepMetrics) -> None:
            memory = None if report.memory_allocated is None else (report.memory_allocated, report.memory_reserved or 0)
            meter.report(report.step, report.tokens, report.elapsed, report.device, memory)

    result = train(spec, {"data": text.encode()}, Callbacks(on_step=on_step))
    if with_metrics:
        metrics.job_ended("train", "bench", "bench@host", "succeeded", time.monotonic() - began)
    return float(result["tokens_per_s"])


def report_cost(steps_per_report: int, calls: int = 2000) -> float:
    """Seconds per TrainingMeter.report covering steps_per_report steps."""
    meter = metrics.TrainingMeter("train", "bench", "bench@host")
    start = time.perf_counter()
    for i in range(calls):
        meter.report(i * steps_per_report, i * steps_per_report * 4096, i * 0.5)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="Spec override (JSON value).")
    args = parser.parse_args()
    fields = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    spec = LMSpec.from_dict({"data": "bench", "time_budget": args.seconds, "eval_every": 10**9, "patience": None,
                                "checkpoint_every": 10**9, **fields})
    text = corpus()
    on, off = [], []
    for i in range(args.rounds):  # alternate which goes first, so drift hits both alike
        first, second = (True, False) if i % 2 == 0 else (False, True)
        for with_metrics in (first, second):
            (on if with_metrics else off).append(one_run(spec, text, with_metrics))
    steps_per_report = max(1, round(statistics.median(off) / (spec.batch_size * spec.seq_len) * REPORT_SECONDS))
    cost = report_cost(steps_per_report)
    print(json.dumps({
        "benchmark": "metrics_overhead", "seconds_per_run": args.seconds,
        "model": {k: getattr(spec, k) for k in ("arch", "layers", "hidden", "seq_len", "batch_size")},
        "tokens_per_s_on": [round(v) for v in on], "tokens_per_s_off": [round(v) for v in off],
        "ratio": round(statistics.median(on) / statistics.median(off), 4), "target": 0.99,
        "steps_per_report": steps_per_report, "report_cost_us": round(cost * 1e6, 1),
        "metrics_share_of_training_time": round(cost / REPORT_SECONDS, 6),
    }))


if __name__ == "__main__":
    main()
