"""Streaming recognition over a bounded ring buffer.

Audio arrives in chunks of any size. Once ``window_s`` seconds have been pushed, the stream
classifies the latest window every ``hop_s`` seconds and emits a *smoothed* prediction, so a
label does not flicker from hop to hop. Memory is one window of samples plus at most
``history`` probability vectors, however long the stream runs.

Each window is featurised on its own with the model's :func:`~ser_edge.runtime.features.extract`.
Note that the ``top_db`` clamp is relative to the loudest frame *of that window*, so window
features differ slightly from the same frames inside a whole-clip extraction: this is the same
per-clip behaviour the model was trained with (each training clip is clamped on its own).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Deque, List, Optional

import numpy as np

from .recognizer import MIN_DURATION_S, SILENCE_PEAK, Prediction, as_mono_float, softmax

if TYPE_CHECKING:
    from .recognizer import Recognizer

SMOOTHING = ("ema", "mean", "none")


class Smoother:
    """Smooths successive probability vectors ``(C,)``.

    * ``ema``: exponential moving average, ``s = alpha * p + (1 - alpha) * s``
    * ``mean``: mean of the last ``history`` vectors
    * ``none``: pass through
    """

    def __init__(self, method: str = "ema", alpha: float = 0.5, history: int = 4) -> None:
        if method not in SMOOTHING:
            raise ValueError(f"smoothing must be one of {SMOOTHING}, got {method!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if history < 1:
            raise ValueError("history must be >= 1")
        self.method, self.alpha = method, float(alpha)
        self.recent: Deque[np.ndarray] = deque(maxlen=history if method == "mean" else 1)
        self.state: Optional[np.ndarray] = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if self.method == "ema" and self.state is not None:
            self.state = self.alpha * probs + (1.0 - self.alpha) * self.state
        elif self.method == "mean":
            self.recent.append(probs)
            self.state = np.mean(self.recent, axis=0)
        else:
            self.state = probs
        return self.state

    def reset(self) -> None:
        self.recent.clear()
        self.state = None


class Stream:
    """``push(chunk) -> [Prediction, ...]`` over a fixed-size ring buffer; ``flush()`` for the tail.

    Chunks are ``(n,)`` or ``(n, channels)`` float in [-1, 1] or int16, at the model's sample
    rate. The k-th prediction covers samples ``[k * hop, k * hop + window)`` of the stream (its
    ``start_s``/``end_s``). A window below -80 dBFS is *silent*: it is not classified, the
    smoothed probabilities are carried over (uniform before any speech) and ``silent`` is set.
    """

    def __init__(self, recognizer: "Recognizer", window_s: float = 2.0, hop_s: float = 0.5,
                 smoothing: str = "ema", alpha: float = 0.5, history: int = 4) -> None:
        self.recognizer = recognizer
        self.sample_rate = sr = recognizer.sample_rate
        self.window = int(round(window_s * sr))
        self.hop = int(round(hop_s * sr))
        if self.window < MIN_DURATION_S * sr:
            raise ValueError(f"window must be at least {MIN_DURATION_S} s")
        if not 0 < self.hop <= self.window:
            raise ValueError("need 0 < hop <= window")
        self.smoother = Smoother(smoothing, alpha, history)
        self._ring = np.zeros(self.window, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget all audio and smoothing state (the buffer is reused, not reallocated)."""
        self._ring[:] = 0.0
        self._pos = 0  # next write index in the ring
        self._filled = 0  # valid samples in the ring, <= window
        self.total = 0  # samples pushed since the start
        self._next_emit = self.window  # stream position (samples) of the next prediction
        self._last_emit = 0
        self.smoother.reset()

    @property
    def buffer_nbytes(self) -> int:
        """Bytes held for audio: constant, one window."""
        return self._ring.nbytes

    def push(self, chunk: np.ndarray) -> List[Prediction]:
        """Append audio; returns the predictions whose hop boundary the chunk crossed (0, 1 or more)."""
        y = as_mono_float(chunk)
        out: List[Prediction] = []
        i = 0
        while i < len(y):
            n = min(len(y) - i, self._next_emit - self.total)
            self._write(y[i:i + n])
            i += n
            if self.total == self._next_emit:
                out.append(self._emit())
                self._next_emit += self.hop
        return out

    def flush(self) -> List[Prediction]:
        """Classify the audio pushed since the last prediction, if any (the latest window, or all
        of a stream shorter than one window; nothing if that is under the minimum duration)."""
        if self.total == self._last_emit or self._filled < MIN_DURATION_S * self.sample_rate:
            return []
        return [self._emit()]

    # -- internals ---------------------------------------------------------------------------
    def _write(self, x: np.ndarray) -> None:
        """Copy ``x`` (at most one window long) into the ring at the write position."""
        first = min(len(x), self.window - self._pos)
        self._ring[self._pos:self._pos + first] = x[:first]
        self._ring[:len(x) - first] = x[first:]
        self._pos = (self._pos + len(x)) % self.window
        self._filled = min(self.window, self._filled + len(x))
        self.total += len(x)

    def _window(self) -> np.ndarray:
        """The buffered audio in time order. ``(min(filled, window),) float32``."""
        if self._filled < self.window:
            return self._ring[:self._filled].copy()  # not wrapped yet: starts at index 0
        return np.concatenate((self._ring[self._pos:], self._ring[:self._pos]))

    def _emit(self) -> Prediction:
        t0 = time.perf_counter()
        rec = self.recognizer
        y = self._window()
        self._last_emit = self.total
        span = dict(start_s=(self.total - len(y)) / self.sample_rate, end_s=self.total / self.sample_rate)
        if float(np.max(np.abs(y))) < SILENCE_PEAK:
            n = len(rec.labels)
            probs = self.smoother.state if self.smoother.state is not None else np.full(n, 1.0 / n)
            logits = np.full(n, np.nan, dtype=np.float32)  # nothing was classified
            return _from_probs(rec.labels, probs, logits, self._timing(t0, t0, t0, len(y)), silent=True, **span)
        feats = rec.features(y)
        t1 = time.perf_counter()
        logits = rec.logits(feats[None], np.array([len(feats)], dtype=np.int64))[0]
        t2 = time.perf_counter()
        probs = self.smoother.update(softmax(logits))
        return _from_probs(rec.labels, probs, logits, self._timing(t0, t1, t2, len(y)), **span)

    def _timing(self, t0: float, t1: float, t2: float, n_samples: int) -> dict:
        """Like :func:`~ser_edge.runtime.recognizer.timing_dict`, but ``rtf`` is compute time per
        hop duration: a stream keeps up with live audio while it stays below 1."""
        t3 = time.perf_counter()
        return {"load_audio_ms": 0.0, "features_ms": 1e3 * (t1 - t0), "model_ms": 1e3 * (t2 - t1),
                "total_ms": 1e3 * (t3 - t0), "audio_s": n_samples / self.sample_rate,
                "rtf": (t3 - t0) * self.sample_rate / self.hop}


def _from_probs(labels, probs: np.ndarray, logits: np.ndarray, timing, **kw) -> Prediction:
    best = int(np.argmax(probs))
    return Prediction(labels[best], {lab: float(p) for lab, p in zip(labels, probs)},
                      np.asarray(logits, dtype=np.float32), timing, **kw)
