"""CER and WER of the transcribe task on held-out synthetic voices, beside PocketSphinx.

    python benchmarks/speech_data.py /tmp/speech                    # the corpus (see its docstring)
    python benchmarks/quality_transcribe.py --corpus /tmp/speech --budget 1500 [--lm-budget 240]
           [--set hidden=160 ...] [--baseline 50]

Trains in-process with rnn_tasks.transcribe (the Problem and loop.fit a worker runs) on
train.tsv for --budget seconds of training (evaluations excluded, as loop.fit counts
them; on a shared machine a budget buys fewer steps, so say how loaded it was). Then:

- the best checkpoint transcribes every test.tsv utterance (voices and sentences never
  in training) greedily and with prefix beam search;
- a character LM (rnnq's own, rnn_tasks.lm.task) is trained for --lm-budget seconds on the
  text source with every test sentence removed, lower-cased and normalised like the
  transcripts, and fused into the beam search (shallow fusion, weight and bonus given);
- PocketSphinx (PyPI `pocketsphinx`, its bundled US English model) transcribes the first
  --baseline test utterances (equal numbers per voice); rnnq's figures on the same
  utterances are reported beside it.

CER and WER by jiwer, on transcripts normalised the same way for every system. Prints
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnn_tasks import device as devices
from rnn_tasks.lm import task as lm_task
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.loop import BEST, Callbacks
from rnn_tasks.transcribe import audio, data, manifest
from rnn_tasks.transcribe.spec import TranscribeSpec, normalize, read_bundle, write_bundle
from rnn_tasks.transcribe.task import _Loaded, error_rates, featurize, lm_scorer, train, transcribe

DEFAULTS = {"arch": "gru", "layers": 2, "hidden": 160, "embed": 128, "subsample": 3, "batch_size": 16, "lr": 3e-3,
            "eval_every": 300, "patience": None, "val_fraction": 0.03, "beam": 8}


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def bundle(path: Path) -> bytes:
    entries = manifest.collect(path, "DATA")
    return write_bundle([(e.name, e.path.read_bytes(), e.transcript or "") for e in entries])


def pocketsphinx(raw: bytes, n: int, voices: int) -> tuple[list[str], list[int], float]:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=audio.RATE, logfn=os.devnull)
    utterances, files = read_bundle(raw)
    per_voice = -(-n // voices)
    picked = sorted(i for v in range(voices) for i in list(range(v, len(utterances), voices))[:per_voice])[:n]
    hyps, start = [], time.perf_counter()
    for i in picked:
        pcm = (np.clip(audio.load(files[utterances[i].member]), -1, 1) * 32767).astype(np.int16).tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        hyps.append(normalize(hyp.hypstr if hyp is not None else ""))
    return hyps, picked, time.perf_counter() - start


def train_lm(text: str, test_sentences: list[str], budget: float, out: Path) -> Path:
    for sentence in test_sentences:
        text = text.replace(sentence, " ")
    lines = [normalize(line) for line in re.split(r"(?<=[.!?;])\s+", " ".join(text.split()))]
    spec = LMSpec(data="inputs/lm", hidden=384, time_budget=budget, eval_every=500, device="cpu")
    lm_task.train(spec, {"data": ("\n".join(x for x in lines if x) + "\n").encode()}, Callbacks(), out, None)
    return out / BEST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="built by benchmarks/speech_data.py")
    parser.add_argument("--text", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/republic_clean.txt")
    parser.add_argument("--budget", type=float, default=1500.0, help="acoustic model training seconds")
    parser.add_argument("--lm-budget", type=float, default=240.0, help="char LM training seconds (0: no LM)")
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--lm-bonus", type=float, default=1.0)
    parser.add_argument("--baseline", type=int, default=50, help="test utterances for PocketSphinx (0: skip)")
    parser.add_argument("--voices", type=int, default=5, help="test voices (round-robin in test.tsv)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON")
    parser.add_argument("--out", type=Path, help="keep checkpoints here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on a shared, loaded machine more threads only spin)")
    args = parser.parse_args()
    fields = {**DEFAULTS, **{k: _value(v) for k, _, v in (s.partition("=") for s in args.set)}}
    spec = TranscribeSpec.from_dict({"data": "inputs/speech", "time_budget": args.budget, "device": "cpu", **fields})
    devices.configure = lambda dev: torch.set_num_threads(args.threads)  # train() would take every core
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="rnnq-asr-"))
    load = os.getloadavg()
    train_raw, test_raw = bundle(args.corpus / "train.tsv"), bundle(args.corpus / "test.tsv")
    curve: list[dict[str, Any]] = []
    started = time.perf_counter()

    def on_step(m: Any) -> None:
        if m.val_loss is not None:
            curve.append({"step": m.step, "elapsed": round(m.elapsed, 1), "loss": round(m.loss, 4),
                          "val_loss": round(m.val_loss, 4)})

    summary = train(spec, {"data": train_raw}, Callbacks(on_step=on_step), out, None)
    wall = time.perf_counter() - started
    loaded = _Loaded(out / "best.safetensors", "cpu")
    utterances, files = read_bundle(test_raw)
    refs = [normalize(u.transcript) for u in utterances]
    feats = data.Utterances(featurize(utterances, files, spec.n_mels), None)
    results: dict[str, Any] = {}
    hyps: dict[str, list[str]] = {}
    for name, beam in (("greedy", 1), (f"beam{spec.beam}", spec.beam)):
        t = time.perf_counter()
        hyps[name] = transcribe(loaded.model, loaded.alphabet, feats, beam)
        results[name] = {**error_rates(refs, hyps[name]), "decode_s": round(time.perf_counter() - t, 1)}
    if args.lm_budget > 0:
        lm_path = train_lm(args.text.read_text(encoding="utf-8"), [u.transcript for u in utterances], args.lm_budget,
                           out / "lm")
        scorer = lm_scorer(lm_path, loaded.alphabet, torch.device("cpu"))
        name = f"beam{spec.beam}+lm"
        t = time.perf_counter()
        hyps[name] = transcribe(loaded.model, loaded.alphabet, feats, spec.beam, scorer, args.lm_weight, args.lm_bonus)
        results[name] = {**error_rates(refs, hyps[name]), "decode_s": round(time.perf_counter() - t, 1),
                         "lm_weight": args.lm_weight, "lm_bonus": args.lm_bonus, "lm_budget_s": args.lm_budget}
    baseline: dict[str, Any] = {}
    if args.baseline > 0:
        ps_hyps, picked, seconds = pocketsphinx(test_raw, args.baseline, args.voices)
        sub = [refs[i] for i in picked]
        baseline = {"utterances": len(picked), "pocketsphinx": {**error_rates(sub, ps_hyps), "decode_s": round(seconds, 1)}}
        for name, h in hyps.items():
            baseline[f"rnnq_{name}"] = error_rates(sub, [h[i] for i in picked])
    print(json.dumps({
        "task": "transcribe", "corpus": str(args.corpus), "spec": {k: v for k, v in spec.to_dict().items() if k != "data"},
        "train_utterances": summary["utterances"], "steps": summary["steps"], "epochs": summary["epochs"],
        "train_elapsed_s": summary["elapsed_s"], "wall_s": round(wall, 1), "stopped_by": summary["stopped_by"],
        "parameters": summary["parameters"], "val": {"cer": summary["cer"], "wer": summary["wer"]},
        "test": {"utterances": len(refs), **results}, "baseline": baseline, "curve": curve,
        "examples": [{"ref": r, **{k: h[i] for k, h in hyps.items()}} for i, r in enumerate(refs[:5])],
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "loadavg_at_start": load,
                    "loadavg_at_end": os.getloadavg(), "python": platform.python_version(), "torch": torch.__version__},
    }, indent=1))


if __name__ == "__main__":
    main()
