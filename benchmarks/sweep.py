"""Does pruning pay? Two sweeps through the real queue, then the best trial retrained.

    python benchmarks/sweep.py --data ../shared/data/tinyshakespeare.txt             # the issue's run
    python benchmarks/sweep.py --data corpus.txt --trials 3 --trial-budget 4 --eval-seconds 1 --retrain 0  # smoke run

Starts a redis-server and one worker (2 threads: this machine's cores), then runs two
arms with the same sampler seed and the same per-trial budget over learning rate,
hidden size, cell type, dropout and sequence length: TPE + ASHA, and TPE without
pruning, --trials each, one trial at a time (so CPU-seconds are the worker's seconds).
Both evaluate every --eval-seconds of training; ASHA's rungs count training seconds (the
budget's own unit; sweep files default to it under a time budget).
For each arm it reports the best validation loss and the trial seconds spent (the sum
of every trial job's running time). Then the best trial of the pruned arm is retrained
for --retrain seconds, and so is the default config (`rnnq train DATA` with nothing set)
on the same worker, for the issue's comparison on one machine. Prints one JSON object.

    python benchmarks/sweep.py --data ... --arms pruned --trial-budget 180 --eval-seconds 20

runs the pruned arm alone with trials as long as the retrain: ASHA's rungs at 20, 60 and
180 training seconds, so the best trial is chosen at the budget it is retrained for.
With --enqueue-base the default config is the first trial of each arm (the searched
fields' defaults are all inside either space), so the sweep starts from what hand-tuning
found. --space near-default narrows the five fields' ranges around the default.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import ROOT, start_redis, start_worker, stop
from workers import sweepboard
from workers.jobstore import JobStore

SPACES = {
    # The space: wide ranges over its five fields.
    "issue": {
        "lr": {"low": 1e-3, "high": 3e-2, "log": True},
        "hidden": {"low": 128, "high": 768, "step": 128},
        "arch": ["lstm", "gru"],
        "dropout": {"low": 0.0, "high": 0.3},
        "seq_len": [64, 128, 256],
    },
    # The same five fields, around the default (LSTM 512, lr 1.2e-2, dropout 0, seq 64):
    # what a user who starts from the default would search.
    "near-default": {
        "lr": {"low": 5e-3, "high": 2.5e-2, "log": True},
        "hidden": {"low": 384, "high": 1024, "step": 128},
        "arch": ["lstm", "gru"],
        "dropout": {"low": 0.0, "high": 0.3},
        "seq_len": [64, 128],
    },
}
HAND_TUNED = 1.532  # the default's best validation loss after 180 s when issue 12 was filed (README)


def _cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"rnnq {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def _arm(env: dict[str, str], store: JobStore, data: Path, name: str, pruner: Any, args: argparse.Namespace) -> dict[str, Any]:
    doc = {"name": name, "base": {"data": str(data.resolve()), "eval_every": 10**9, "eval_seconds": args.eval_seconds,
                                  "patience": 1000},
           "space": SPACES[args.space], "trials": args.trials, "budget": {"time_budget": args.trial_budget},
           "sampler": {"name": "tpe", "seed": args.seed}, "pruner": pruner, "parallel": 1}
    if args.enqueue_base:
        doc["enqueue"] = ["base"]  # the default config (every searched field at its default) is trial 0
    path = Path(env["RNNQ_HOME"]) / f"{name}.json"
    path.write_text(json.dumps(doc))
    began = time.perf_counter()
    board = json.loads(_cli(env, "sweep", str(path), "--wait", "--json"))
    jobs = [store.get(row["job_id"]) for row in board["trials"] if row["job_id"]]
    seconds = sum((j.finished_at or 0) - (j.started_at or 0) for j in jobs)
    best = sweepboard.best(store, name)
    return {"best_val_loss": min(r["value"] for r in board["trials"] if r["state"] == "succeeded"),
            "best_job": best, "best_params": next(r["params"] for r in board["trials"] if r["job_id"] == best),
            "trial_seconds": round(seconds, 1), "wall_s": round(time.perf_counter() - began, 1),
            "states": {s: sum(r["state"] == s for r in board["trials"]) for s in {r["state"] for r in board["trials"]}}}


def _train(env: dict[str, str], store: JobStore, data: Path, sets: list[str], budget: float) -> float | None:
    """Best validation loss of `rnnq train DATA *sets --time-budget budget`, run to the end."""
    line = _cli(env, "train", str(data), *sets, "--time-budget", str(budget), "--json", "--wait").strip().splitlines()[0]
    return (store.get(json.loads(line)["job_id"]).result or {}).get("best_val_loss")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--trial-budget", type=float, default=75.0, help="training seconds per trial [default: 75, so "
                    "16 unpruned trials take 20 minutes]")
    ap.add_argument("--eval-seconds", type=float, default=9.0, help="training seconds between evaluations, each a "
                    "report to the trial [default: 9, the first rung: a ninth of the 75 s budget, rounded up]")
    ap.add_argument("--retrain", type=float, default=180.0, help="seconds to retrain the best trial (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--arms", choices=("both", "pruned"), default="both",
                    help="both (the pruning comparison) or the pruned arm alone [default: both]")
    ap.add_argument("--space", choices=sorted(SPACES), default="issue",
                    help="issue: the issue's wide ranges; near-default: narrower ranges around the default "
                    "[default: issue]")
    ap.add_argument("--enqueue-base", action="store_true",
                    help="try the default config first (`enqueue: [base]`), then sample [default: sample every trial]")
    ap.add_argument("--keep", action="store_true",
                    help="keep the run's folder (worker log, Redis data, artifacts) and print its path to stderr "
                    "[default: remove it, unless the run failed]")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="rnnq-sweep-bench-"))
    redis_proc, url = start_redis(home)
    env = {**os.environ, "RNNQ_REDIS_URL": url, "RNNQ_ARTIFACTS": str(home / "artifacts"), "RNNQ_HOME": str(home)}
    worker = start_worker(env, home / "worker.log", queues="train")
    finished = False
    try:
        store = JobStore(url)
        asha = {"name": "asha", "reduction_factor": 3}  # rungs in training seconds: 9 and 27 at 75 s per trial
        pruned = _arm(env, store, args.data, "pruned", asha, args)
        report: dict[str, Any] = {"benchmark": "sweep", "trials": args.trials, "trial_budget_s": args.trial_budget,
                                  "space": args.space, "enqueue_base": args.enqueue_base, "tpe_asha": pruned}
        if args.arms == "both":
            unpruned = _arm(env, store, args.data, "unpruned", "none", args)
            report.update(tpe=unpruned, gap=round(pruned["best_val_loss"] - unpruned["best_val_loss"], 4),
                          compute_ratio=round(pruned["trial_seconds"] / max(unpruned["trial_seconds"], 1e-9), 3))
        if args.retrain > 0:
            sets = [x for k, v in pruned["best_params"].items() for x in ("--set", f"{k}={json.dumps(v)}")]
            report["retrained"] = {"budget_s": args.retrain, "params": pruned["best_params"],
                                   "best_val_loss": _train(env, store, args.data, sets, args.retrain),
                                   "default_best_val_loss": _train(env, store, args.data, [], args.retrain),
                                   "hand_tuned_when_filed": HAND_TUNED}
        print(json.dumps(report))
        finished = True
    finally:
        stop(worker.proc)
        stop(redis_proc)
        if args.keep or not finished:
            print(f"kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
