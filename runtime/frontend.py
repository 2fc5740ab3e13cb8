"""Incremental feature extraction for streams: every STFT frame is computed once, as its audio
arrives, instead of once per window that contains it.

Where the window mode's time goes, per 0.5 s hop of a 2 s window (201 frames at 10 ms): the STFT
and mel projection of all 201 frames, ~85 % of the feature time. Everything after the mel
projection is cheap (a ``(201, 40)`` matrix: dB, clamp, DCT, normalisation). So the
:class:`FrameCache` keeps, per frame of the *stream*, the quantities that depend on that frame's
samples alone (mel power, chroma), and :func:`window_features` rebuilds a window's model input
from them with the operations that depend on the window as a whole:

* ``top_db`` clamps relative to the loudest frame *of the window*,
* gain normalisation (``gain_norm_db``) scales by the window's active level (mel power scales
  by the gain squared; chroma is scale invariant),
* deltas are fitted over the window's frames with the window's own edges,

and recomputes only the 2 + 2 frames whose FFT span crosses the window's edges (the window mode
zero-pads there). The result equals :func:`~ser_edge.runtime.features.extract` on the window to
float rounding (tests/test_frontend.py), for every feature configuration, provided the window
starts on the frame grid (``hop % hop_length == 0``, checked by the stream).

:func:`causal_features` is the stateful stream's variant: features of *new* frames only, with
the clamp relative to the loudest frame of the trailing window (a per-frame quantity cannot wait
for the end of a window it starts). Configurations whose features need the future (deltas, gain
normalisation) cannot be made causal: :func:`causal_support` says why.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .features import FeatureConfig, features_from_mel, mel_chroma, normalise, power_gain


def frames_per_side(cfg: FeatureConfig) -> int:
    """Frames at each end of a window whose FFT span crosses the window's edge:
    ``ceil((n_fft / 2) / hop_length)`` (2 at n_fft 512, hop 160)."""
    return -(-(cfg.n_fft // 2) // cfg.hop_length)


def frame_spectra(y: np.ndarray, first: int, count: int, cfg: FeatureConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Mel power and chroma of ``count`` frames of ``y`` centred at ``(first + j) * hop_length``,
    with zero padding only where those spans leave ``y`` (as a clip is padded), computed by the
    clip's own :func:`~ser_edge.runtime.features.mel_chroma`.
    ``(n,) -> ((count, n_mels), (count, n_chroma))`` float32 (float64 beyond float32's range).

    Runs on the smallest slice of ``y`` that holds the spans, started on the frame grid so its
    frames are exactly the wanted ones."""
    hl = cfg.hop_length
    margin = frames_per_side(cfg)
    a = max(0, first - margin) * hl  # slice start, on the grid
    b = min(len(y), (first + count - 1 + margin) * hl + 1)
    mel, chroma = mel_chroma(y[a:b], cfg, with_chroma=bool(cfg.n_chroma))
    j = first - a // hl
    return mel[j:j + count], (chroma[j:j + count] if chroma is not None else np.zeros((count, 0), mel.dtype))


class FrameCache:
    """Per-frame mel power (and chroma) of a stream in a ring of ``capacity`` frames.

    Frame ``f`` is centred at stream sample ``f * hop_length`` (zero padding before the stream
    start, as a clip is padded) and is computed by :meth:`update` once its whole FFT span has
    arrived. Audio is kept only until the frames that need it are computed.
    """

    def __init__(self, cfg: FeatureConfig, capacity: int) -> None:
        self.cfg = cfg
        self.capacity = int(capacity)
        self.mel = np.zeros((self.capacity, cfg.n_mels))
        self.chroma = np.zeros((self.capacity, cfg.n_chroma))
        self.reset()

    def reset(self) -> None:
        self.n_frames = 0  # frames computed since the stream start
        self.total = 0  # samples pushed
        # audio from global sample index self._start (a multiple of hop_length) on; the zeros
        # before sample 0 are the padding a clip gets before its start
        pad = frames_per_side(self.cfg) * self.cfg.hop_length
        self._audio = np.zeros(pad, dtype=np.float32)
        self._start = -pad

    def push(self, x: np.ndarray) -> None:
        """Append ``(n,) float32`` samples (frames are computed lazily by :meth:`update`)."""
        self._audio = np.concatenate((self._audio, x))
        self.total += len(x)

    def ready(self) -> int:
        """Frames whose span has fully arrived: ``f * hop + n_fft / 2 <= total``."""
        return max(0, (self.total - self.cfg.n_fft // 2) // self.cfg.hop_length + 1)

    def update(self) -> Tuple[int, int]:
        """Compute every frame whose span has arrived. Returns the new frame range ``[f0, f1)``."""
        f0, f1, _, _ = self._update(edge=False)
        return f0, f1

    def update_with_edge(self) -> Tuple[int, int, np.ndarray, np.ndarray]:
        """:meth:`update`, and in the same STFT call the frames not complete yet, ``[f1, total //
        hop_length]``, their spans zero-padded past the audio's end as a clip's last frames are
        (not cached: they are computed properly once their audio has arrived).
        -> ``(f0, f1, edge mel (k, n_mels), edge chroma (k, n_chroma))``."""
        return self._update(edge=True)

    def _update(self, edge: bool) -> Tuple[int, int, np.ndarray, np.ndarray]:
        cfg, hl = self.cfg, self.cfg.hop_length
        f0, f1 = self.n_frames, self.ready()
        last = self.total // hl + 1 if edge else f1  # frames [f0, last) computed
        mel, chroma = np.zeros((0, cfg.n_mels)), np.zeros((0, cfg.n_chroma))
        if last > f0:
            mel, chroma = frame_spectra(self._audio, f0 - self._start // hl, last - f0, cfg)
        if f1 > f0:
            idx = np.arange(f0, f1) % self.capacity
            self.mel[idx], self.chroma[idx] = mel[:f1 - f0], chroma[:f1 - f0]
            self.n_frames = f1
            keep = (f1 - frames_per_side(cfg)) * hl - self._start  # where the next update's slice starts
            self._audio = self._audio[keep:]
            self._start += keep
        return f0, f1, mel[f1 - f0:], chroma[f1 - f0:]

    def take(self, f0: int, f1: int) -> Tuple[np.ndarray, np.ndarray]:
        """Cached ``(mel (n, n_mels), chroma (n, n_chroma))`` of frames ``[f0, f1)`` (copies)."""
        if f1 > self.n_frames or f0 < self.n_frames - self.capacity:
            raise IndexError(f"frames [{f0}, {f1}) are not cached (have [{max(0, self.n_frames - self.capacity)}, "
                             f"{self.n_frames}))")
        idx = np.arange(f0, f1) % self.capacity
        return self.mel[idx], self.chroma[idx]


def assemble(mel: np.ndarray, chroma: Optional[np.ndarray], cfg: FeatureConfig, clamp_ref: Optional[float] = None,
             stats: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> np.ndarray:
    """Model input from mel power (and chroma) of consecutive frames: dB, ``top_db`` clamp
    (relative to ``clamp_ref`` dB, default the loudest value of ``mel``), DCT (base "mfcc"),
    deltas over these frames, chroma, normalisation (with ``stats``, an adapted speaker's
    ``(mean, std)``, when given). ``(n, n_mels) -> (n, n_features) float32``."""
    return normalise(features_from_mel(mel, chroma, cfg, clamp_ref), cfg, stats)


def window_features(cache: FrameCache, y: np.ndarray, start: int, cfg: FeatureConfig,
                    stats: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> np.ndarray:
    """Model input for the window ``y`` = stream samples ``[start, start + len(y))``, from the
    cached frames plus the recomputed edge frames; equal to ``extract(y, cfg)`` to float
    rounding (``stats``: as :func:`assemble`). ``start % hop_length == 0``.
    ``(n,) -> (cfg.n_frames(n), n_features) float32``."""
    hl = cfg.hop_length
    if start % hl:
        raise ValueError(f"window start {start} is not on the frame grid (hop_length {hl})")
    n = cfg.n_frames(len(y))
    left = min(n, frames_per_side(cfg))  # frames [0, left) cross the window start
    right = max(left, (len(y) - cfg.n_fft // 2) // hl + 1)  # frames [right, n) cross its end
    mel = np.empty((n, cfg.n_mels))
    chroma = np.empty((n, cfg.n_chroma))
    f0 = start // hl
    mel[left:right], chroma[left:right] = cache.take(f0 + left, f0 + right)
    for a, b in ((0, left), (right, n)):
        if b > a:
            mel[a:b], chroma[a:b] = frame_spectra(y, a, b - a, cfg)
    return assemble(mel * power_gain(y, cfg), chroma, cfg, stats=stats)


def causal_support(cfg: FeatureConfig) -> Optional[str]:
    """None when a frame's features can be computed from the past alone (:func:`assemble` with
    a trailing clamp reference); else the reason in words."""
    if cfg.deltas:
        return "its deltas look 4+ frames ahead and fit the window's edges"
    if cfg.gain_norm_db is not None:
        return "its gain normalisation depends on the whole window's level"
    return None
