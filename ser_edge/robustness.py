"""Robustness of an exported model to what changes between recordings but not emotions.

``level_agreement`` plays every clip quieter and louder (as a 16-bit WAV would carry it: scaled,
rounded and clipped to full scale) and counts how often the top-1 label stays the same. A model
whose features depend on the recording level changes its answer; one with ``gain_norm_db`` in its
feature config only sees the clipping and quantisation.

``label_spread`` summarises how predictions spread over the classes on a set of clips: a model
that collapses onto one class on unfamiliar recordings shows a dominant share near 1.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, Sequence

import numpy as np

from ser_edge.runtime.audio import load_audio
from ser_edge.runtime.recognizer import Recognizer


def play_at(y: np.ndarray, gain_db: float) -> np.ndarray:
    """``y`` scaled by ``gain_db`` as 16-bit PCM would carry it (rounded, clipped): what a level
    change does to a real recording (also the gain augmentation of :mod:`ser_edge.augment`).
    ``(n,) float -> (n,) float32``."""
    scaled = np.asarray(y, dtype=np.float64) * 10.0 ** (gain_db / 20.0)
    pcm = np.clip(np.round(scaled * 32768.0), -32768, 32767)
    return (pcm / 32768.0).astype(np.float32)


def level_agreement(rec: Recognizer, paths: Sequence[str], gains_db: Iterable[float] = (-20.0, 12.0)) -> Dict:
    """Top-1 agreement of ``rec`` between each clip and the same clip at each gain.

    ``-> {"n": clips, "by_gain": {gain: {"agreement", "clipped_clips", "changed": [...]}}}``;
    a clip counts as clipped when more than 0.1 % of its samples hit full scale at that gain."""
    base: List[str] = []
    waves = []
    for p in paths:
        y = load_audio(p, rec.sample_rate)
        waves.append(y)
        base.append(rec.predict(y).label)
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


__all__ = ["play_at", "level_agreement", "label_spread"]
