"""Reading audio: WAV, FLAC and OGG through soundfile (libsndfile), resampled to 16 kHz
with soxr, stereo mixed to mono. numpy only, no torch, so the CLI can check files at submit.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

from rnn_tasks.errors import DataError

RATE = 16_000  # every model hears 16 kHz


class AudioError(DataError):
    """A recording cannot be decoded."""


def seconds(data: bytes) -> float:
    """The duration of a recording from its header (nothing decoded); AudioError if unreadable."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"not readable audio (WAV, FLAC or OGG): {exc}") from None
    if info.samplerate <= 0 or info.frames <= 0:
        raise AudioError("contains no samples")
    return float(info.frames) / info.samplerate


def load(data: bytes) -> np.ndarray:
    """Mono float32 samples at 16 kHz in [-1, 1]."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"not readable audio (WAV, FLAC or OGG): {exc}") from None
    mono = samples.mean(axis=1)
    if rate != RATE:
        mono = soxr.resample(mono, rate, RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
