"""Build a spoken corpus with espeak-ng (and sox) from a text: train and test splits whose
voices and sentences never meet.

    python benchmarks/speech_data.py OUT [--text ../shared/data/republic_clean.txt]
           [--train 3000] [--test 250] [--seed 0]

Writes OUT/train.tsv and OUT/test.tsv (columns path, sentence; paths relative to OUT)
and the recordings under OUT/clips/ as 16 kHz FLAC. Prints a JSON summary.

Recipe:
- sentences of 4-14 words cut from the text at . ! ? ; (letters, spaces and light
  punctuation only, no digits), deduplicated, shuffled with the seed; the test split
  takes its sentences first, and no test sentence is spoken in training;
- a voice is an espeak-ng English dialect with a voice variant; training uses the
  variants in TRAIN_VARIANTS, the test split only TEST_VOICES, whose variants never
  occur in training (so every test voice is new to the model);
- each utterance gets a random rate (130-200 words a minute) and pitch (25-75), a sox
  speed change of 0.9-1.1 and white noise at 15-35 dB SNR, then sox resamples it to 16 kHz.

Limits: synthetic voices are far cleaner and more regular than people; one formant
synthesiser with different settings is not many speakers. Figures on this corpus say
that the pipeline works and compare systems on one footing; they are not what the same
model would score on recorded speech.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

DIALECTS = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
TRAIN_VARIANTS = ["", "m1", "m2", "m3", "m5", "m8", "f1", "f2", "f5", "adam", "john", "linda", "paul", "steph",
                  "robert", "edward", "benjamin", "david", "max", "annie"]
TEST_VOICES = ["en-us+f3", "en-gb+m4", "en-gb-scotland+m7", "en-029+f4", "en-gb-x-rp+m6"]
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
ALLOWED = re.compile(r"^[A-Za-z ,.'!?;:-]+$")


def sentences(text: str, lo: int = 4, hi: int = 14) -> list[str]:
    out, seen = [], set()
    for raw in SENTENCE_END.split(" ".join(text.split())):
        s = raw.strip(" -;:")
        n = len(s.split())
        if lo <= n <= hi and ALLOWED.match(s) and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    return out


def speak(text: str, voice: str, rng: random.Random, path: Path, tmp: Path) -> float:
    """One utterance as 16 kHz FLAC at `path`; returns its duration in seconds."""
    wav = tmp / "say.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rng.randint(130, 200)), "-p", str(rng.randint(25, 75)),
                    "-w", str(wav), text], check=True, capture_output=True)
    noisy = tmp / "noisy.wav"
    samples, rate = sf.read(wav, dtype="float32")
    power = float(np.mean(samples**2)) or 1e-8
    snr = rng.uniform(15.0, 35.0)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0.0, np.sqrt(power / 10 ** (snr / 10)), len(samples))
    sf.write(noisy, np.clip(samples + noise, -1, 1).astype(np.float32), rate, subtype="PCM_16")
    subprocess.run(["sox", str(noisy), "-r", "16000", str(path), "speed", f"{rng.uniform(0.9, 1.1):.3f}"],
                   check=True, capture_output=True)
    return float(sf.info(path).duration)


def build(out: Path, text: str, n_train: int, n_test: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    pool = sentences(text)
    rng.shuffle(pool)
    if len(pool) < n_train + n_test:
        sys.exit(f"only {len(pool)} usable sentences for {n_train} + {n_test} utterances")
    test_sentences, train_sentences = pool[:n_test], pool[n_test : n_test + n_train]
    train_voices = [f"{d}+{v}" if v else d for d in DIALECTS for v in TRAIN_VARIANTS]
    (out / "clips").mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, texts, voices in (("train", train_sentences, train_voices), ("test", test_sentences, TEST_VOICES)):
            lines, seconds = ["path\tsentence"], 0.0
            for i, sentence in enumerate(texts):
                voice = voices[i % len(voices)] if split == "test" else rng.choice(voices)
                name = f"clips/{split}_{i:05d}.flac"
                seconds += speak(sentence, voice, rng, out / name, Path(tmp))
                lines.append(f"{name}\t{sentence}")
            (out / f"{split}.tsv").write_text("\n".join(lines) + "\n")
            summary[split] = {"utterances": len(texts), "hours": round(seconds / 3600, 3), "voices": len(voices)}
    summary["test_voices"] = TEST_VOICES
    summary["train_variants"] = [v or "(default)" for v in TRAIN_VARIANTS]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--text", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/republic_clean.txt")
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH (apt-get install espeak-ng sox)")
    summary = build(args.out, args.text.read_text(encoding="utf-8"), args.train, args.test, args.seed)
    print(json.dumps({"out": str(args.out), **summary}))


if __name__ == "__main__":
    main()
