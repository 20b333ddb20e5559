"""Log-mel features and SpecAugment, in torch (torchaudio has no build for the torch rnnq pins).

    samples (N,) at 16 kHz -> |STFT|^2, 25 ms Hann windows every 10 ms (512-point FFT)
                           -> mel filterbank (HTK scale, 20 Hz .. 8 kHz) -> log
    feats (frames, n_mels)  then normalised per utterance: zero mean, unit variance per band,
                            so loudness and channel differ less between recordings
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from rnn_tasks.transcribe.audio import RATE

N_FFT = 512
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
F_MIN = 20.0
LOG_FLOOR = 1e-6


def _mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def filterbank(n_mels: int) -> torch.Tensor:
    """Triangular mel filters (N_FFT // 2 + 1, n_mels), peak 1."""
    freqs = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    edges = _hz(np.linspace(_mel(np.array(F_MIN)), _mel(np.array(RATE / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower) / (centre - lower)
    down = (upper - freqs[:, None]) / (upper - centre)
    return torch.from_numpy(np.maximum(0.0, np.minimum(up, down)).astype(np.float32))


def log_mel(samples: np.ndarray, n_mels: int) -> torch.Tensor:
    """Normalised log-mel features (frames, n_mels) of mono 16 kHz samples."""
    x = torch.from_numpy(samples)
    if len(x) < WINDOW:
        x = torch.nn.functional.pad(x, (0, WINDOW - len(x)))
    spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WINDOW, window=torch.hann_window(WINDOW),
                      center=True, return_complex=True)
    power = spec.abs().pow(2).T  # (frames, freqs)
    feats = torch.log(power @ filterbank(n_mels) + LOG_FLOOR)
    mean, std = feats.mean(0, keepdim=True), feats.std(0, keepdim=True)  # >= 3 frames: the window is padded
    return ((feats - mean) / (std + 1e-5)).contiguous()


def frames(seconds: float) -> int:
    return math.floor(seconds * RATE / HOP) + 1


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, freq_masks: int, freq_mask: int, time_masks: int,
                 time_mask: int) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) without time warping, on a padded batch (B, T, M).

    Each utterance gets `freq_masks` bands of up to `freq_mask` mel bins and `time_masks`
    spans of up to min(time_mask, length / 10) frames set to 0 (the mean, after
    normalisation); spans lie inside the utterance's own length.
    """
    batch, steps, bins = x.shape
    dev = x.device
    keep = torch.ones(batch, steps, bins, dtype=torch.bool, device=dev)
    bin_pos = torch.arange(bins, device=dev)
    for _ in range(freq_masks):
        width = torch.randint(0, freq_mask + 1, (batch,), device=dev)
        start = (torch.rand(batch, device=dev) * (bins - width + 1)).long()
        keep &= ~((bin_pos >= start[:, None]) & (bin_pos < (start + width)[:, None]))[:, None, :]
    lens = lengths.to(dev)
    step_pos = torch.arange(steps, device=dev)
    limit = torch.clamp(lens // 10, max=time_mask)
    for _ in range(time_masks):
        width = (torch.rand(batch, device=dev) * (limit + 1)).long()
        start = (torch.rand(batch, device=dev) * (lens - width + 1)).long()
        keep &= ~((step_pos >= start[:, None]) & (step_pos < (start + width)[:, None]))[:, :, None]
    return x * keep
