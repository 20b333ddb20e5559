"""The GPU check: every job kind on CUDA through a real worker, and rnnq's speed beside plain PyTorch.

    python benchmarks/gpu_check.py prepare DIR               # the inputs (speech needs espeak-ng)
    python benchmarks/gpu_check.py run DIR [--seconds 8] [--out FILE] [--cpu]

`run` starts a private redis-server and `rnnq worker --gpus all --metrics-port P` (one
pool process per GPU, a fresh process per job), then, in this order, so that a run cut
short keeps the parts that matter most:

1. every kind through the CLI as a user sends it (`rnnq train ... --wait --json`): the
   char and word language models, classify, forecast, translate and transcribe, each
   trained with bf16 autocast, then generated from, predicted with and evaluated;
2. the worker's metrics, scraped while a job trains: the NVML gauges and torch's memory
   gauges, labelled by GPU;
3. LM training tokens/s, an rnnq job beside a bare cuDNN loop (nn.Embedding -> nn.LSTM
   or nn.GRU -> nn.Linear, AdamW, clipping, bf16 autocast, state carried) of the same
   shape for the same seconds, interleaved: bare, rnnq, bare, rnnq;
4. sampling tokens/s at batch 1 and 64, rnnq's generator beside the plain loop
   (benchmarks/sample_speed.py's);
5. every kind again with --no-amp (fp32).

It prints one JSON object and rewrites --out after every part. `--cpu` runs the same on
a machine without a GPU (a dry run of the script: no --gpus, no autocast, no NVML).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

SMALL = ["--hidden", "64", "--embed", "32", "--batch-size", "32"]
SHAPE = {"hidden": 1024, "embed": 128, "layers": 2, "seq_len": 256, "batch_size": 64}  # GPU-sized LM


def prepare(folder: Path) -> None:
    """Write every kind's input into folder (run where espeak-ng is, to speak the audio)."""
    from tests.speech import corpus as speech_corpus
    from tests.support import parallel, phrase_corpus, sentiment_csv, series_csv

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chars.txt").write_text(phrase_corpus(60_000, seed=1))
    (folder / "words.txt").write_text(phrase_corpus(30_000))
    sentiment_csv(folder / "reviews.csv", rows=600)
    series_csv(folder / "series.csv")
    parallel(folder)
    speech_corpus(folder / "speech", 60)


class Stack:
    """A private redis-server and one `rnnq worker`, for the length of a run."""

    def __init__(self, home: Path, gpus: bool) -> None:
        from workers import local
        from workers import settings as settings_mod

        self.home = home
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            port, self.metrics_port = a.getsockname()[1], b.getsockname()[1]
        self.settings = dataclasses.replace(settings_mod.resolve(), home=home, local_port=port, local=True,
                                            redis_url=f"redis://127.0.0.1:{port}/0", artifacts=home / "artifacts",
                                            input_cache=home / "cache")
        self.env = {**os.environ, **settings_mod.export(self.settings), "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        local.up(self.settings, worker=False)
        argv = [sys.executable, "-m", "cli.main", "worker", "--queues", "train,generate", "--name", "gpucheck",
                "--metrics-port", str(self.metrics_port), "--metrics-addr", "127.0.0.1"]
        self.log = home / "worker.log"
        with open(self.log, "ab") as out:
            self.worker = subprocess.Popen(argv + (["--gpus", "all"] if gpus else []), stdout=out,
                                           stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def cli(self, *args: str) -> dict[str, Any]:
        """`rnnq ARGS --wait --json`, then `rnnq result JOB --json`: the job's record."""
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "cli.main", *args, "--wait", "--json"], env=self.env,
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rnnq {' '.join(args[:2])} exited {done.returncode}: {done.stderr.strip()[-400:]}")
        first = done.stdout.splitlines()[0]
        job_id = json.loads(first if first.endswith("}") else done.stdout)["job_id"]
        result = subprocess.run([sys.executable, "-m", "cli.main", "result", job_id, "--json"], env=self.env,
                                capture_output=True, text=True, timeout=60, check=True)
        record = dict(json.loads(result.stdout))
        record["wall_s"] = round(time.perf_counter() - started, 2)
        return record

    def scrape(self) -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return [line for line in reply.read().decode().splitlines() if line.startswith("rnnq_gpu_")]

    def close(self) -> None:
        from workers import local

        self.worker.terminate()
        try:
            self.worker.wait(30)
        except subprocess.TimeoutExpired:
            self.worker.kill()
        local.down(self.settings)


def _brief(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: record[k] for k in ("state", "device", "steps", "tokens_per_s", "wall_s", *keys) if k in record}


def every_kind(stack: Stack, data: Path, amp: bool) -> dict[str, Any]:
    """Train each kind, then use the model the way its users do; the figures that matter."""
    flags = [*SMALL, "--max-steps", "300", "--eval-every", "100"] + ([] if amp else ["--no-amp"])
    tag = "amp" if amp else "fp32"
    out: dict[str, Any] = {}

    def kind(name: str, train: list[str], after: Callable[[str], dict[str, Any]], keys: tuple[str, ...]) -> None:
        try:
            record = stack.cli("train", *train, *flags, "--name", f"{name}-{tag}")
            out[name] = _brief(record, keys)
            if record.get("state") == "succeeded":
                out[name]["then"] = after(f"{name}-{tag}")
        except Exception as exc:  # noqa: BLE001 - one kind failing must not hide the others' figures
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}

    def generate(job: str) -> dict[str, Any]:
        sample = stack.cli("generate", job, "--prompt", "the ", "--max-tokens", "40", "--seed", "1")
        return {"text": sample["texts"][0][:60], "eval": _brief(stack.cli("eval", job, "--data", str(data / "chars.txt")),
                                                                 ("perplexity",))}

    kind("lm-char", [str(data / "chars.txt"), "--seq-len", "64"], generate, ("val_loss", "perplexity"))
    kind("lm-word", [str(data / "words.txt"), "--tokenizer", "word", "--seq-len", "16"],
         lambda job: {"eval": _brief(stack.cli("eval", job, "--data", str(data / "words.txt")), ("perplexity",))},
         ("perplexity",))
    kind("classify", [str(data / "reviews.csv"), "--task", "classify"],
         lambda job: {"predict": [p["label"] for p in stack.cli("predict", job, "--text", "the film was great",
                                                                   "--text", "a plot was awful")["predictions"]],
                      "eval": _brief(stack.cli("eval", job, "--data", str(data / "reviews.csv")), ("accuracy",))},
         ("accuracy", "macro_f1"))
    kind("forecast", [str(data / "series.csv"), "--task", "forecast", "--horizon", "3", "--lookback", "12",
                      "--season", "12"],
         lambda job: {"predict": stack.cli("predict", job)["forecast"],
                      "eval": _brief(stack.cli("eval", job, "--data", str(data / "series.csv")),
                                     ("rmse", "baseline_rmse"))},
         ("rmse", "baseline_rmse", "skill"))
    source, target = str(data / "src.en.gz"), str(data / "tgt.fr")
    kind("translate", ["--task", "translate", "--source", source, "--target-file", target, "--tokenizer", "word"],
         lambda job: {"eval": _brief(stack.cli("eval", job, "--data", source, "--target-file", target), ("bleu",))},
         ("bleu", "chrf"))
    manifest = data / "speech" / "manifest.tsv"
    if manifest.is_file():
        kind("transcribe", [str(manifest), "--task", "transcribe"],
             lambda job: {"eval": _brief(stack.cli("eval", job, "--data", str(manifest), "--beam", "1"),
                                         ("cer", "wer"))},
             ("cer", "wer"))
    return out


def bare_lm(text: str, arch: str, seconds: float, dev: Any, amp: bool) -> float:
    """Tokens/s of the plain loop: the same model, optimizer, clipping and windows as rnnq's LM."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    vocab = sorted(set(text))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([lookup[c] for c in text], device=dev)
    b, t = SHAPE["batch_size"], SHAPE["seq_len"]
    emb = nn.Embedding(len(vocab), SHAPE["embed"]).to(dev)
    rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[arch](SHAPE["embed"], SHAPE["hidden"], SHAPE["layers"],
                                                 batch_first=True).to(dev)
    head = nn.Linear(SHAPE["hidden"], len(vocab)).to(dev)
    params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    stream = ids[: (len(ids) // b) * b].view(b, -1)
    state, pos, tokens = None, 0, 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and dev.type == "cuda")
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if pos + t + 1 > stream.size(1):
            pos, state = 0, None
        x, y = stream[:, pos : pos + t], stream[:, pos + 1 : pos + t + 1]
        with autocast:
            out, state = rnn(emb(x), state)
            logits = head(out)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(vocab)).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        pos += t
        tokens += x.numel()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def rnnq_lm(stack: Stack, text: str, arch: str, seconds: float, amp: bool) -> tuple[float, str]:
    from workers import submit
    from workers.app import make_app
    from workers.artifacts import LocalArtifactStore
    from workers.jobstore import FINAL_STATES, JobStore

    s = stack.settings
    store, app = JobStore(s.redis_url), make_app(s)
    spec = submit.build_spec("lm", {"arch": arch, **SHAPE, "time_budget": seconds, "eval_every": 10**9,
                                    "patience": None, "checkpoint_seconds": 10**6, "amp": amp})
    job = submit.submit_train(store, LocalArtifactStore(s.artifacts), app, spec, {"data": text.encode()})
    while (record := store.get(job.id)).state not in FINAL_STATES:
        time.sleep(0.5)
    if record.state != "succeeded":
        raise RuntimeError(f"benchmark job {job.id} {record.state}: {record.error}")
    return float(record.result["tokens_per_s"]), str(record.result.get("device"))  # type: ignore[union-attr]


def throughput(stack: Stack, seconds: float, dev: Any, amp: bool) -> dict[str, Any]:
    from tests.support import make_corpus

    text = make_corpus(1_000_000, seed=2)
    out: dict[str, Any] = {"shape": SHAPE, "seconds_per_run": seconds, "amp": amp}
    for arch in ("lstm", "gru"):
        bare, queued = [], []
        for _ in range(2):
            bare.append(bare_lm(text, arch, seconds, dev, amp))
            queued.append(rnnq_lm(stack, text, arch, seconds, amp)[0])
        out[arch] = {"bare_tokens_per_s": [round(v) for v in bare], "rnnq_tokens_per_s": [round(v) for v in queued],
                     "ratio": round(statistics.median(queued) / statistics.median(bare), 4), "target": 0.95}
    return out


def sampling(dev: Any, rounds: int = 3) -> dict[str, Any]:
    """rnnq's generator and the plain loop, interleaved round by round (every raw figure kept),
    and the CUDA kernels each launches per token (torch.profiler)."""
    from functools import partial

    import torch
    from sample_speed import plain_loop, rate

    from rnn_tasks.lm.model import LanguageModel, LMConfig
    from rnn_tasks.lm.sampling import SampleOptions, generate
    from rnn_tasks.tokenizer import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer([chr(c) for c in range(32, 97)])
    model = LanguageModel(LMConfig(vocab_size=len(tok), arch="lstm", embed=64, hidden=512, layers=2)).to(dev).eval()
    opts = SampleOptions(max_tokens=400, temperature=1.0, seed=0)
    runs = {f"{who}_batch{b}": (partial(generate, model, tok, ["A" * 16] * b, opts) if who == "rnnq"
                                else partial(plain_loop, model, b, 400, dev), b * 400)
            for b in (1, 64) for who in ("rnnq", "plain")}
    for fn, _ in runs.values():
        fn()  # warm up kernels
    out: dict[str, Any] = {"model": "lstm 2x512, vocab 65", "tokens_per_prompt": 400}
    for _ in range(rounds):
        for name, (fn, tokens) in runs.items():
            out.setdefault(f"{name}_tokens_per_s", []).append(round(rate(fn, tokens, repeats=1)))
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        for name, (fn, _) in runs.items():
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                fn()
            launches = sum(e.count for e in prof.key_averages() if e.key in ("cudaLaunchKernel", "cuLaunchKernel",
                                                                               "cudaLaunchKernelExC"))
            syncs = sum(e.count for e in prof.key_averages() if "Synchronize" in e.key or "MemcpyAsync" in e.key)
            out[f"{name}_launches_per_token"] = round(launches / 400, 1)
            out[f"{name}_syncs_and_copies"] = syncs
    return out


def lm_breakdown(stack: Stack, seconds: float, dev: Any) -> dict[str, Any]:
    """Where a GRU job's tokens/s goes, interleaved, two rounds: the bare loop; the bare loop
    with rnnq's device settings (cudnn.benchmark, TF32); rnnq's loop in this process (no
    worker); the job through the worker; and the bare loop in fp32 (what bf16 gains)."""
    import torch

    from rnn_tasks import device as devices
    from rnn_tasks.lm import task as lm_task
    from tests.support import make_corpus
    from workers import submit

    text = make_corpus(1_000_000, seed=2)
    spec = submit.build_spec("lm", {"arch": "gru", **SHAPE, "time_budget": seconds, "eval_every": 10**9,
                                    "patience": None, "checkpoint_seconds": 10**6})
    out: dict[str, list[int]] = {}

    def add(name: str, value: float) -> None:
        out.setdefault(name, []).append(round(value))

    for _ in range(2):
        add("bare", bare_lm(text, "gru", seconds, dev, amp=True))
        before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
        devices.configure(dev)
        add("bare_rnnq_settings", bare_lm(text, "gru", seconds, dev, amp=True))
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = before
        add("rnnq_loop_in_process", lm_task.train(spec, {"data": text.encode()})["tokens_per_s"])
        add("rnnq_worker", rnnq_lm(stack, text, "gru", seconds, amp=True)[0])
        add("bare_fp32", bare_lm(text, "gru", seconds, dev, amp=False))
        add("bare_lstm_fp32", bare_lm(text, "lstm", seconds, dev, amp=False))
    return {"arch": "gru", "shape": SHAPE, "seconds_per_run": seconds, **out}


def facts(dev: Any) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(dev),
                           "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        out.update(gpu=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    return out


PARTS = ("kinds_amp", "lm_throughput", "gpu_metrics", "sampling", "kinds_fp32", "lm_breakdown")


def run(data: Path, seconds: float, out_path: Path | None, cpu: bool, parts: list[str]) -> dict[str, Any]:
    import torch

    dev = torch.device("cpu" if cpu else "cuda")
    report: dict[str, Any] = {"benchmark": "gpu_check", "facts": facts(dev)}

    def save() -> None:
        if out_path is not None:
            out_path.write_text(json.dumps(report, indent=1))

    def part(name: str, fn: Callable[[], Any]) -> None:
        if name not in parts:
            return
        started = time.perf_counter()
        try:
            report[name] = fn()
        except Exception:  # noqa: BLE001 - a part that fails is reported, and the next one runs
            report[name] = {"error": traceback.format_exc(limit=4)[-1500:]}
        report.setdefault("part_seconds", {})[name] = round(time.perf_counter() - started, 1)
        save()

    home = Path(tempfile.mkdtemp(prefix="rnnq-gpucheck-"))
    stack = Stack(home, gpus=not cpu)
    seen: dict[str, float] = {}
    done = threading.Event()

    def scrape() -> None:  # the largest value seen of every GPU series, once a second while jobs run
        while not done.wait(1.0):
            try:
                lines = stack.scrape()
            except OSError:
                continue
            for line in lines:
                name, _, value = line.rpartition(" ")
                seen[name] = max(seen.get(name, 0.0), float(value))

    threading.Thread(target=scrape, daemon=True).start()
    try:
        part("kinds_amp", lambda: every_kind(stack, data, amp=True))
        part("lm_throughput", lambda: throughput(stack, seconds, dev, amp=True))
        part("gpu_metrics", lambda: dict(sorted(seen.items())))
        part("sampling", lambda: sampling(dev))
        part("kinds_fp32", lambda: every_kind(stack, data, amp=False))
        part("lm_breakdown", lambda: lm_breakdown(stack, seconds, dev))
    finally:
        done.set()
        stack.close()
        if out_path is not None:
            shutil.copy(stack.log, out_path.with_name("gpu_check_worker.log"))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare").add_argument("dir", type=Path)
    go = sub.add_parser("run")
    go.add_argument("dir", type=Path)
    go.add_argument("--seconds", type=float, default=8.0, help="seconds per throughput run")
    go.add_argument("--out", type=Path, help="also write the JSON here, after every part")
    go.add_argument("--cpu", action="store_true", help="dry run without a GPU")
    go.add_argument("--parts", default=",".join(PARTS), help="which parts to run, comma-separated")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.dir)
    else:
        print(json.dumps(run(args.dir, args.seconds, args.out, args.cpu, args.parts.split(","))))


if __name__ == "__main__":
    main()
