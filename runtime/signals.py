"""Deterministic test signals (numpy only): used where a real clip is not at hand, e.g. the
self-test vector an export embeds, ``ser-edge bench`` without ``--wav``, synthetic benchmark clips."""

from __future__ import annotations

import numpy as np


def speechlike(seconds: float, sample_rate: int = 16000, f0: float = 140.0, syllable_hz: float = 3.0,
               n_harmonics: int = 11, seed: int = 0, wobble: float = 0.2, taper: bool = True) -> np.ndarray:
    """A voiced, speech-like signal: a harmonic stack whose pitch wobbles by ``wobble`` x ``f0`` at
    1.3 Hz, under a syllable-rate envelope, plus a little noise; ``taper`` fades the ends with a
    Hann window. ``(round(seconds * sample_rate),) float32`` in [-1, 1)."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    pitch = f0 * (1.0 + wobble * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, n_harmonics + 1))
    env = 0.5 * (1 - np.cos(2 * np.pi * syllable_hz * t))
    if taper:
        env = env * np.hanning(n)
    noise = np.random.default_rng(seed).standard_normal(n)
    return (0.2 * voiced * env + 0.003 * noise).astype(np.float32)
