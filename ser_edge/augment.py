"""Per-epoch sampling and augmentation. Every random draw derives from ``(seed, epoch, ...)``
(see :mod:`ser_edge.train`), so runs are reproducible and resumable without saved RNG state.

Augmentations target what breaks a speaker-independent model on new recordings:

* **gain** (+-20 dB by default): the recording level. With ``gain_norm_db`` in the features it
  is removed exactly; without it, the model learns to ignore MFCC c0's level offset.
* **noise** (white, SNR range) and **speed** (0.9-1.1, Kaldi-style tempo + pitch) on the waveform;
* **SpecAugment** (time and feature masks) and **mixup** (convex mixtures of batch items and
  their targets) on features, against memorising a few speakers;
* **cached copies** (``TrainConfig.copies``): fixed perturbed versions of every training clip
  (``speed:S``, ``noise:SNR``, ``band:HZ``, ``reverb:RT60``, see :func:`perturb_copy`) whose
  features are extracted once and cached like the clip's own, so they cost nothing per epoch
  (waveform augmentation recomputes features every time, ~4x the training time).
"""

from __future__ import annotations

import math
import zlib
from typing import List, Optional, Tuple

import numpy as np

from ser_edge.robustness import add_noise, band_limit, play_at, reverberate
from ser_edge.runtime.audio import DEFAULT_TAPS, resample

#: Items sorted by length within groups of this many batches (less padding, still shuffled).
BUCKET_BATCHES = 16
#: Resampling filter half-length for speed perturbation (see augment_waveform).
AUGMENT_TAPS = 8
# Sub-streams of the derived randomness.
STREAM_ORDER, STREAM_ITEM, STREAM_STEP, STREAM_MIX = 0, 1, 2, 3


#: Kinds of cached copy and the range of their value: ``"speed:0.9"`` plays the clip 0.9x as fast
#: (tempo and pitch), ``"noise:20"`` adds coloured noise 20 dB below the clip's mean power,
#: ``"band:3400"`` band-limits it (a telephone or cheap microphone: low-pass near 3400 Hz, high-pass
#: at 100-400 Hz), ``"reverb:0.4"`` plays it in a synthetic room (RT60 near 0.4 s).
COPY_KINDS = {"speed": (0.5, 2.0), "noise": (-10.0, 60.0), "band": (1000.0, 7900.0), "reverb": (0.05, 2.0)}


def parse_copy(spec: str) -> Tuple[str, float]:
    """``"kind:value"`` -> ``(kind, value)``. Raises ValueError saying what is wrong."""
    kind, sep, value = str(spec).partition(":")
    if not sep or kind not in COPY_KINDS:
        raise ValueError(f"copy {spec!r}: expected one of {', '.join(k + ':VALUE' for k in COPY_KINDS)}")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"copy {spec!r}: {value!r} is not a number") from None
    lo, hi = COPY_KINDS[kind]
    if not (math.isfinite(v) and lo <= v <= hi) or (kind == "speed" and v == 1.0):
        raise ValueError(f"copy {spec!r}: {kind} must be in [{lo:g}, {hi:g}]"
                         + (" and not 1 (the clip itself)" if kind == "speed" else ""))
    return kind, v


def speed_perturb(y: np.ndarray, sample_rate: int, speed: float, taps_per_side: int = DEFAULT_TAPS) -> np.ndarray:
    """``y`` played ``speed`` times faster, tempo and pitch together (Kaldi-style speed
    perturbation: resampled from ``sample_rate * speed`` to ``sample_rate`` with the runtime's
    resampler). ``(n,) -> (~n / speed,) float32``."""
    return resample(y, int(round(sample_rate * speed)), sample_rate, taps_per_side=taps_per_side)


def coloured_noise(n: int, sample_rate: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power falls as ``1 / f ** slope`` (0 white, 1 pink, 2 brown; flat
    below 50 Hz), unit mean power. ``-> (n,) float64``."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 50.0)
    noise = np.fft.irfft(spec * f ** (-slope / 2.0), n)
    return noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)


def perturb_copy(y: np.ndarray, sample_rate: int, spec: str, name: str) -> np.ndarray:
    """The cached copy ``spec`` of clip ``y`` (file name ``name``): deterministic, so a cache
    entry never goes stale. Random parameters are drawn from the file name and the spec:
    ``noise`` its noise and colour (slope 0-2); ``band`` its low-pass cut-off (0.8-1.2x the value)
    and high-pass (100-400 Hz); ``reverb`` its room (RT60 0.5-1.5x the value).
    ``(n,) -> (m,) float32``."""
    kind, v = parse_copy(spec)
    if kind == "speed":
        return speed_perturb(y, sample_rate, v)
    rng = np.random.default_rng([zlib.crc32(name.encode("utf-8")), zlib.crc32(spec.encode("utf-8"))])
    if kind == "band":
        lo, hi = float(rng.uniform(100.0, 400.0)), min(v * float(rng.uniform(0.8, 1.2)), 0.49 * sample_rate)
        return band_limit(y, sample_rate, lo, hi)
    if kind == "reverb":
        return reverberate(y, sample_rate, v * float(rng.uniform(0.5, 1.5)), rng)
    slope = float(rng.uniform(0.0, 2.0))
    return add_noise(y, v, coloured_noise(len(y), sample_rate, slope, rng))


def derived_seed(*keys: int) -> int:
    """A 32-bit seed that depends on every key (numpy SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world: int = 1, bucket: bool = True) -> List[np.ndarray]:
    """This rank's batches of item indices for ``epoch``.

    A seeded permutation is padded (by repetition) to a multiple of ``world`` and dealt out
    like ``DistributedSampler``, so every rank runs the same number of steps. With ``bucket``,
    items are sorted by length inside groups of ``BUCKET_BATCHES`` batches and the batches
    shuffled, so padding stays small while batch composition still changes every epoch.
    """
    rng = np.random.default_rng([seed, epoch, STREAM_ORDER])
    order = rng.permutation(len(lengths))
    if world > 1:
        order = np.resize(order, math.ceil(len(order) / world) * world)[rank::world]
    if bucket:
        group = batch_size * BUCKET_BATCHES
        order = np.concatenate([g[np.argsort(lengths[g], kind="stable")]
                                for g in (order[i:i + group] for i in range(0, len(order), group))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def augment_waveform(y: np.ndarray, sample_rate: int, rng: np.random.Generator,
                     snr_db: Tuple[float, float], speed_range: Tuple[float, float],
                     gain_db: Tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Speed perturbation, additive white noise, then a random gain as a 16-bit recording would
    carry it (rounded to the PCM grid and clipped at full scale). ``(n,) -> (~n / speed,) float32``.

    Speed is quantised to 0.01 so the resampling ratio stays a small fraction (cheap
    polyphase path in :func:`resample`); a clip resampled from ``sr * speed`` to ``sr`` plays
    ``speed`` times faster (tempo and pitch, as in Kaldi-style speed perturbation). The gain goes
    through 16-bit PCM because that is what a level change does to a real recording: a quiet one
    sinks towards the quantisation floor and a loud one clips, and gain-normalised features see
    exactly that and nothing else.
    """
    speed = round(float(rng.uniform(*speed_range)), 2)
    if speed != 1.0:
        # 8 taps a side (vs 48 for real resampling): ~40 dB stop band is plenty for an
        # augmentation and ~10x cheaper, so augmenting costs about what the MFCC does.
        y = speed_perturb(y, sample_rate, speed, taps_per_side=AUGMENT_TAPS)
    snr = float(rng.uniform(*snr_db))
    return play_at(add_noise(y, snr, rng.standard_normal(len(y))), float(rng.uniform(*gain_db)))


def random_crop(feats: np.ndarray, max_frames: Optional[int], rng: np.random.Generator) -> np.ndarray:
    """At most ``max_frames`` consecutive frames at a random offset (``None``/0: no crop).
    ``(t, d) -> (min(t, max), d)``."""
    if not max_frames or len(feats) <= max_frames:
        return feats
    start = int(rng.integers(0, len(feats) - max_frames + 1))
    return feats[start:start + max_frames]


def spec_augment(feats: np.ndarray, n_masks: int, rng: np.random.Generator) -> np.ndarray:
    """``n_masks`` time masks (each up to 10 % of the frames) and ``n_masks`` feature masks (each
    up to 1/8 of the columns), set to 0 = the training mean after normalisation.
    ``(t, d) -> (t, d) float32`` (a copy)."""
    out = np.array(feats, dtype=np.float32, copy=True)
    t, d = out.shape
    for _ in range(n_masks):
        w = int(rng.integers(0, max(1, t // 10) + 1))
        s = int(rng.integers(0, t - w + 1))
        out[s:s + w] = 0.0
        w = int(rng.integers(0, max(1, d // 8) + 1))
        s = int(rng.integers(0, d - w + 1))
        out[:, s:s + w] = 0.0
    return out


def mixup_plan(n: int, alpha: float, seed: int, epoch: int, step: int) -> Tuple[float, np.ndarray]:
    """``(lam, partner)`` for mixing a batch of ``n`` items: item ``i`` becomes
    ``lam * x_i + (1 - lam) * x_partner[i]`` and its loss the same mixture of targets.
    ``lam`` is drawn from Beta(alpha, alpha), folded to >= 0.5 so each item stays mostly itself."""
    rng = np.random.default_rng([seed, epoch, STREAM_MIX, step])
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam), rng.permutation(n)


__all__ = ["derived_seed", "epoch_batches", "augment_waveform", "perturb_copy", "parse_copy", "speed_perturb",
           "coloured_noise", "COPY_KINDS", "random_crop", "spec_augment", "mixup_plan",
           "BUCKET_BATCHES", "AUGMENT_TAPS"]
