"""Robustness of an exported model to what changes between recordings but not emotions.

``level_agreement`` plays every clip quieter and louder (as a 16-bit WAV would carry it: scaled,
rounded and clipped to full scale) and counts how often the top-1 label stays the same. A model
whose features depend on the recording level changes its answer; one with ``gain_norm_db`` in its
feature config only sees the clipping and quantisation.

``label_spread`` summarises how predictions spread over the classes on a set of clips: a model
that collapses onto one class on unfamiliar recordings shows a dominant share near 1.

``condition_report`` plays every clip through other recording chains (:data:`CONDITIONS`: a
telephone band, a 4 kHz low-pass, brighter and duller microphones, white noise, a reverberant
room) and reports, per chain, the UAR, the top-1 agreement with the clean clip and the label
spread. Other corpora differ from the training corpus in exactly these ways, so this is how a
change is judged on recordings it was not tuned to, without those corpora.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np

from ser_edge.evaluate import confusion_matrix, uar_from_cm
from ser_edge.runtime.audio import load_audio, peak
from ser_edge.runtime.recognizer import Recognizer


def play_at(y: np.ndarray, gain_db: float) -> np.ndarray:
    """``y`` scaled by ``gain_db`` as 16-bit PCM would carry it (rounded, clipped): what a level
    change does to a real recording (also the gain augmentation of :mod:`ser_edge.augment`).
    ``(n,) float -> (n,) float32``."""
    scaled = np.asarray(y, dtype=np.float64) * 10.0 ** (gain_db / 20.0)
    pcm = np.clip(np.round(scaled * 32768.0), -32768, 32767)
    return (pcm / 32768.0).astype(np.float32)


def add_noise(y: np.ndarray, snr_db: float, noise: np.ndarray) -> np.ndarray:
    """``y`` plus ``noise`` (unit power) ``snr_db`` below ``y``'s mean power. ``-> (n,) float32``."""
    power = float(np.mean(np.square(y, dtype=np.float64)))
    return (y + noise * math.sqrt(power / 10.0 ** (snr_db / 10.0))).astype(np.float32)


def _clean_predictions(rec: Recognizer, paths: Sequence[str]) -> Tuple[List[np.ndarray], List[str]]:
    """Each clip at the model's rate and ``rec``'s top-1 label for it: what every check compares with."""
    waves = [load_audio(p, rec.sample_rate) for p in paths]
    return waves, [rec.predict(y).label for y in waves]


def level_agreement(rec: Recognizer, paths: Sequence[str], gains_db: Iterable[float] = (-20.0, 12.0)) -> Dict:
    """Top-1 agreement of ``rec`` between each clip and the same clip at each gain.

    ``-> {"n": clips, "by_gain": {gain: {"agreement", "clipped_clips", "changed": [...]}}}``;
    a clip counts as clipped when more than 0.1 % of its samples hit full scale at that gain."""
    waves, base = _clean_predictions(rec, paths)
    out: Dict = {"n": len(waves), "by_gain": {}}
    for g in gains_db:
        same, clipped, changed = 0, 0, []
        for p, y, b in zip(paths, waves, base):
            z = play_at(y, g)
            clipped += int(np.mean(np.abs(z) >= 32767 / 32768) > 1e-3)
            label = rec.predict(z).label
            same += label == b
            if label != b:
                changed.append({"file": str(p), "from": b, "to": label})
        out["by_gain"][f"{g:+g} dB"] = {"agreement": same / max(1, len(waves)), "clipped_clips": clipped,
                                         "changed": changed}
    return out


def label_spread(labels: Sequence[str], classes: Sequence[str]) -> Dict:
    """Share of predictions per class and the largest share (1.0 = collapsed onto one class)."""
    counts = Counter(labels)
    n = max(1, len(labels))
    shares = {c: counts.get(c, 0) / n for c in classes}
    return {"n": len(labels), "shares": shares, "max_share": max(shares.values()) if shares else 0.0,
            "classes_predicted": sum(1 for v in shares.values() if v > 0)}


def _filtered(y: np.ndarray, sample_rate: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``y`` through the zero-phase filter whose magnitude response is ``gain(f_hz)``, applied
    to the whole clip in the frequency domain. ``(n,) -> (n,) float32``."""
    n = len(y)
    spec = np.fft.rfft(np.asarray(y, dtype=np.float64), 2 * n)  # 2x: no circular wrap of the response
    spec *= gain(np.fft.rfftfreq(2 * n, 1.0 / sample_rate))
    return np.fft.irfft(spec, 2 * n)[:n].astype(np.float32)


def _butter_mag(f: np.ndarray, fc: float, order: int, high: bool = False) -> np.ndarray:
    """Butterworth magnitude response: low-pass at ``fc`` Hz, or high-pass with ``high``."""
    ratio = np.where(f > 0, fc / np.maximum(f, 1e-9), np.inf) if high else f / fc
    return 1.0 / np.sqrt(1.0 + ratio ** (2 * order))


def _shelf(f: np.ndarray, fc: float, db: float) -> np.ndarray:
    """A smooth high shelf: 0 dB well below ``fc`` Hz, ``db`` well above."""
    w = f ** 2 / (f ** 2 + fc ** 2)
    return 10.0 ** (db * w / 20.0)


def band_limit(y: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """``y`` through a band-pass: Butterworth-shaped high-pass at ``low_hz`` (order 2) and low-pass
    at ``high_hz`` (order 4), zero-phase. ``(n,) -> (n,) float32``."""
    return _filtered(y, sample_rate, lambda f: _butter_mag(f, high_hz, 4) * _butter_mag(f, low_hz, 2, high=True))


def reverberate(y: np.ndarray, sample_rate: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """``y`` convolved with a synthetic room response: the direct path, then exponentially
    decaying noise (-60 dB after ``rt60_s``) from 5 ms on, scaled to the clip's peak.
    ``(n,) -> (n,) float32``."""
    n = max(2, int(rt60_s * sample_rate))
    t = np.arange(n) / sample_rate
    rir = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60_s) * 0.3
    rir[: int(0.005 * sample_rate)] = 0.0
    rir[0] = 1.0
    m = len(y) + n - 1
    wet = np.fft.irfft(np.fft.rfft(y, 2 * m) * np.fft.rfft(rir, 2 * m), 2 * m)[: len(y)]
    return (wet * (peak(y) / max(peak(wet), 1e-12))).astype(np.float32)


#: Recording chains other than the training corpus's: ``name -> f(y, sample_rate) -> y`` (each
#: deterministic; the result then goes through 16-bit PCM like any recording).
CONDITIONS: Dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "telephone band (300-3400 Hz)": lambda y, sr: band_limit(y, sr, 300.0, 3400.0),
    "low-pass 4 kHz": lambda y, sr: _filtered(y, sr, lambda f: _butter_mag(f, 4000.0, 4)),
    "bright mic (+8 dB above 2 kHz)": lambda y, sr: _filtered(y, sr, lambda f: _shelf(f, 2000.0, 8.0)),
    "dull mic (-8 dB above 2 kHz)": lambda y, sr: _filtered(y, sr, lambda f: _shelf(f, 2000.0, -8.0)),
    "white noise, 20 dB SNR": lambda y, sr: add_noise(y, 20.0, np.random.default_rng(0).standard_normal(len(y))),
    "room reverb (RT60 0.4 s)": lambda y, sr: reverberate(y, sr, 0.4, np.random.default_rng(0)),
}


def _uar(truth: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> float:
    """UAR of label lists (evaluate's one definition: recall averaged over the classes present)."""
    index = {c: i for i, c in enumerate(classes)}
    cm = confusion_matrix([index[t] for t in truth], [index[p] for p in pred], len(classes))
    return uar_from_cm(cm)


def condition_report(rec: Recognizer, paths: Sequence[str], truth: Sequence[str],
                     conditions: Iterable[str] = tuple(CONDITIONS)) -> Dict:
    """Per recording chain: UAR against ``truth``, top-1 agreement with the clean clip, label
    spread (:func:`label_spread`). ``-> {"n", "clean": {...}, "conditions": {name: {...}}}``."""
    waves, clean = _clean_predictions(rec, paths)
    out: Dict = {"n": len(waves), "clean": {"uar": _uar(truth, clean, rec.labels),
                                            "max_share": label_spread(clean, rec.labels)["max_share"]},
                 "conditions": {}}
    for name in conditions:
        chain = CONDITIONS[name]
        pred = [rec.predict(play_at(chain(y, rec.sample_rate), 0.0)).label for y in waves]
        spread = label_spread(pred, rec.labels)
        out["conditions"][name] = {"uar": _uar(truth, pred, rec.labels),
                                   "agreement": float(np.mean([a == b for a, b in zip(clean, pred)])),
                                   "max_share": spread["max_share"], "classes_predicted": spread["classes_predicted"],
                                   "shares": spread["shares"]}
    return out


__all__ = ["play_at", "add_noise", "level_agreement", "label_spread", "condition_report", "band_limit", "reverberate",
           "CONDITIONS"]
