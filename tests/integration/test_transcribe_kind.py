"""Speech recognition through the real queue: train on a manifest of espeak-ng recordings,
predict on audio files, evaluate on a manifest, fuse a character LM, and refuse bad input
at submit time, naming the file, with nothing queued."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests import speech
from tests.integration.conftest import Env, Worker
from tests.integration.test_kinds import refused, run

pytestmark = pytest.mark.integration

# The unit tests' recipe (tests/unit/test_transcribe.py): 300 steps learn the espeak-ng
# recordings well below CER 0.8 (an output of nothing scores 1.0).
SMALL = ["--arch", "gru", "--hidden", "48", "--embed", "32", "--layers", "1", "--batch-size", "8", "--eval-every", "150",
         "--max-steps", "300", "--lr", "0.01", "--set", "warmup_steps=10", "--set", "dropout=0", "--set", "beam=2",
         "--set", "n_mels=40", "--set", "subsample=4"]
CER_CEILING = 0.8


def test_transcribe_train_predict_eval_with_a_language_model(env: Env, worker: Worker) -> None:
    folder = env.tmp / "speech"
    manifest = speech.corpus(folder, 32)
    trained = run(env, "train", str(manifest), "--task", "transcribe", *SMALL, "--name", "asr")
    assert trained["state"] == "succeeded" and trained["steps"] == 300
    assert trained["cer"] < CER_CEILING and trained["beam"] == 2
    assert " " in trained["alphabet"] and set(trained["alphabet"]) <= set("".join(speech.WORDS) + " ")

    clips = sorted((folder / "clips").glob("*.wav"))[:2]
    predicted = run(env, "predict", "asr", "--input", str(clips[0]), "--input", str(clips[1]), "--beam", "2")
    assert [t["audio"] for t in predicted["transcripts"]] == [c.name for c in clips]
    assert predicted["beam"] == 2 and all(isinstance(t["text"], str) for t in predicted["transcripts"])

    figures = run(env, "eval", "asr", "--data", str(manifest), "--beam", "1")
    assert figures["n"] == 32 and figures["cer"] < CER_CEILING and figures["beam"] == 1

    lm_text = env.tmp / "phrases.txt"
    lm_text.write_text("\n".join(speech.phrases(400, seed=3)) + "\n")
    run(env, "train", str(lm_text), "--hidden", "32", "--embed", "16", "--seq-len", "32", "--batch-size", "8",
        "--max-steps", "30", "--eval-every", "15", "--name", "phrases-lm")
    fused = run(env, "eval", "asr", "--data", str(manifest), "--beam", "2", "--lm", "phrases-lm",
                "--lm-weight", "0.3")
    assert fused["lm_weight"] == 0.3 and fused["n"] == 32

    unseen = folder / "unseen.tsv"
    unseen.write_text(f"path\tsentence\n{clips[0].relative_to(folder)}\tquiz\n")
    out = refused(env, "eval", "asr", "--data", str(unseen))
    assert clips[0].name in out and "never saw" in out and "'q" in out
    assert "--lm" in refused(env, "predict", "asr", "--input", str(clips[0]), "--lm", "asr")
    assert "--text" in refused(env, "predict", "asr", "--text", "hello")


def test_transcribe_bad_input_is_refused_at_submit(env: Env) -> None:
    folder = env.tmp / "bad"
    folder.mkdir()
    speech.say("go left", folder / "ok.wav")
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    sf.write(folder / "long.flac", np.zeros(16_000 * 3, dtype=np.float32), 16_000)
    manifest = folder / "m.csv"

    def rows(*lines: str) -> Path:
        manifest.write_text("path,transcript\n" + "\n".join(lines) + "\n")
        return manifest

    out = refused(env, "train", str(rows("ok.wav,go left", "gone.wav,go right")), "--task", "transcribe")
    assert "gone.wav" in out and "does not exist" in out
    out = refused(env, "train", str(rows("ok.wav,go left", "broken.wav,stop")), "--task", "transcribe")
    assert "broken.wav (m.csv line 3)" in out and "not readable audio" in out
    out = refused(env, "train", str(rows("ok.wav,go left", "long.flac,\"  \"")), "--task", "transcribe")
    assert "long.flac (m.csv line 3): empty transcript" in out
    out = refused(env, "train", str(rows("ok.wav,go left", "long.flac,up")), "--task", "transcribe",
                  "--set", "max_seconds=2.5")
    assert "long.flac" in out and "3.0 s" in out
    assert "at least 2" in refused(env, "train", str(rows("ok.wav,go left")), "--task", "transcribe")
    out = refused(env, "train", str(folder), "--task", "transcribe")  # a folder without transcripts
    assert "broken.wav has no transcript broken.txt" in out
