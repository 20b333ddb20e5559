"""Spoken test data made at test time with espeak-ng (tests never download or ship audio).

Skips with the reason where espeak-ng is missing, unless RNNQ_REQUIRE_ESPEAK=1 (set by
.ci/run, which installs it) makes that a failure.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

WORDS = ["yes", "no", "up", "down", "left", "right", "go", "stop", "on", "off"]
VOICES = ["en-us", "en-gb", "en-us+f2", "en-gb+m3"]


def espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        if os.environ.get("RNNQ_REQUIRE_ESPEAK") == "1":
            pytest.fail("RNNQ_REQUIRE_ESPEAK=1 but espeak-ng is not on PATH (apt-get install espeak-ng)")
        pytest.skip("espeak-ng is not on PATH (apt-get install espeak-ng): no speech to test on")
    return path


def say(text: str, path: Path, voice: str = "en-us", rate: int = 160, pitch: int = 50) -> Path:
    """Speak text into a WAV file (espeak-ng writes 22,050 Hz mono 16-bit)."""
    subprocess.run([espeak(), "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(path), text], check=True,
                   capture_output=True)
    return path


def phrases(n: int, seed: int = 0, words: int = 3) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, words))) for _ in range(n)]


def corpus(folder: Path, n: int, seed: int = 0, voices: list[str] | None = None) -> Path:
    """A TSV manifest (path, transcript) of n spoken phrases in folder/clips, paths relative."""
    rng = random.Random(seed)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    lines = ["path\tsentence"]
    for i, text in enumerate(phrases(n, seed)):
        name = f"clips/u{seed}_{i}.wav"
        say(text, folder / name, rng.choice(voices or VOICES), rng.randint(140, 190), rng.randint(35, 65))
        lines.append(f"{name}\t{text.capitalize()}.")
    manifest = folder / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
