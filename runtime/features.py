"""Feature configuration and the one MFCC implementation (numpy only).

The same code computes features for training (via ``ser_edge``) and on the device, so
train/serve skew cannot creep in. It matches ``librosa.feature.mfcc`` with

    sr=16000, n_fft=512, win_length=400, hop_length=160, window="hamming", center=True,
    pad_mode="constant", n_mels=40, htk=False (slaney mel), norm="slaney", power=2.0,
    top_db=80, dct_type=2, norm="ortho"

to <= 1e-4 relative (tests/test_features.py). The STFT runs in float64: numpy's pocketfft is
no faster in float32, and float64 keeps us well inside the tolerance.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .errors import SerEdgeError

#: Bump when the meaning of a field changes; the runtime refuses a model from another schema.
FEATURE_SCHEMA_VERSION = 1


class FeatureConfigError(SerEdgeError, ValueError):
    """A feature configuration is invalid or from an unsupported schema."""


#: Bounds that flag a corrupt configuration (a model file can say anything) rather than a real one.
MAX_N_FFT = 1 << 16
MAX_N_MELS = 1024
#: Narrowest mel band accepted (Hz): far below any FFT bin, wide enough that the filterbank's
#: divisions by band widths stay finite.
MIN_BAND_HZ = 1e-3
#: Any other integer field beyond this is corrupt too (and would overflow numpy's C longs).
MAX_INT = 1 << 24
_INT_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    """A finite real number (JSON also carries NaN, Infinity and ints too large for a float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


@dataclass(frozen=True)
class FeatureConfig:
    """Everything needed to turn a waveform into model input. Frozen and hashable.

    ``mean``/``std`` are per-coefficient normalisation statistics computed on the training
    set (``None`` until fitted). Embedded as JSON in every exported model.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    window: str = "hamming"
    n_mels: int = 40
    n_mfcc: int = 40
    fmin: float = 0.0
    fmax: Optional[float] = None  # None = sample_rate / 2
    top_db: Optional[float] = 80.0
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    schema_version: int = FEATURE_SCHEMA_VERSION

    def __post_init__(self) -> None:
        # Normalise list -> tuple so the config stays hashable after a JSON round trip.
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                try:
                    values = list(value) if not isinstance(value, (str, bytes)) else None
                except TypeError:
                    values = None
                if values is None or not all(_is_real(v) for v in values):
                    raise FeatureConfigError(f"{name} must be a list of finite numbers")
                object.__setattr__(self, name, tuple(float(v) for v in values))
        self.validate()

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        if not _is_int(self.schema_version) or self.schema_version != FEATURE_SCHEMA_VERSION:
            raise FeatureConfigError(
                f"feature schema version {self.schema_version} is not supported "
                f"(this runtime reads version {FEATURE_SCHEMA_VERSION})"
            )
        # Types first: a config read from a model file may hold any JSON value.
        for name in _INT_FIELDS:
            if not _is_int(getattr(self, name)) or not 0 < getattr(self, name) <= MAX_INT:
                raise FeatureConfigError(f"{name} must be an integer in [1, {MAX_INT}], got {getattr(self, name)!r}")
        for name in ("fmin", "fmax", "top_db"):
            value = getattr(self, name)
            if (value is not None or name == "fmin") and not _is_real(value):
                raise FeatureConfigError(f"{name} must be a finite number, got {value!r}")
        if not isinstance(self.window, str) or self.window not in _WINDOWS:
            raise FeatureConfigError(f"unknown window {self.window!r}; expected one of {sorted(_WINDOWS)}")
        if not (0 < self.win_length <= self.n_fft):
            raise FeatureConfigError("need 0 < win_length <= n_fft")
        if self.n_fft % 2 or self.n_fft > MAX_N_FFT:
            # odd sizes would break n_frames(): centre padding of n_fft // 2 drops a frame
            raise FeatureConfigError(f"n_fft must be even and at most {MAX_N_FFT}, got {self.n_fft}")
        if self.n_mels > MAX_N_MELS:
            raise FeatureConfigError(f"n_mels must be at most {MAX_N_MELS}, got {self.n_mels}")
        if self.hop_length <= 0 or self.sample_rate <= 0:
            raise FeatureConfigError("sample_rate and hop_length must be positive")
        if not (0 < self.n_mfcc <= self.n_mels):
            raise FeatureConfigError("need 0 < n_mfcc <= n_mels")
        if not (0 <= self.fmin < self.f_max <= self.sample_rate / 2):
            raise FeatureConfigError("need 0 <= fmin < fmax <= sample_rate / 2")
        edges = mel_to_hz(np.linspace(hz_to_mel(self.fmin), hz_to_mel(self.f_max), self.n_mels + 2))
        if np.diff(edges).min() < MIN_BAND_HZ:
            raise FeatureConfigError(f"fmin..fmax = {self.fmin}..{self.f_max} Hz is too narrow "
                                     f"for {self.n_mels} mel bands")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != self.n_mfcc:
                raise FeatureConfigError(f"{name} has {len(value)} values, expected n_mfcc={self.n_mfcc}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and not all(math.isfinite(v) for v in value):
                raise FeatureConfigError(f"{name} contains NaN or infinite values")
        if self.top_db is not None and not self.top_db > 0:
            raise FeatureConfigError("top_db must be positive (or None)")
        if (self.mean is None) != (self.std is None):
            raise FeatureConfigError("mean and std must be given together")
        if self.std is not None and min(self.std) <= 0:
            raise FeatureConfigError("std values must be positive")

    @property
    def f_max(self) -> float:
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2.0

    @property
    def is_normalised(self) -> bool:
        return self.mean is not None

    def with_stats(self, mean: Sequence[float], std: Sequence[float]) -> "FeatureConfig":
        """Copy with normalisation statistics (computed on the training set)."""
        return dataclasses.replace(self, mean=tuple(mean), std=tuple(std))

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in ("mean", "std"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FeatureConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise FeatureConfigError(f"unknown feature config fields: {sorted(unknown)}")
        if "schema_version" not in d:
            raise FeatureConfigError("feature config has no schema_version")
        try:
            return cls(**d)
        except TypeError as e:  # wrong types inside
            raise FeatureConfigError(f"invalid feature config: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "FeatureConfig":
        try:
            d = json.loads(text)
        # ValueError: bad JSON or bad UTF-8; RecursionError: absurdly deep nesting; TypeError: not text
        except (ValueError, RecursionError, TypeError) as e:
            raise FeatureConfigError(f"feature config is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise FeatureConfigError("feature config JSON must be an object")
        return cls.from_dict(d)

    # -- derived quantities ---------------------------------------------------------------
    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` samples (centre padding, like librosa)."""
        return 1 + int(n_samples) // self.hop_length


# ---------------------------------------------------------------------------------------
# Precomputed matrices (cached per configuration: computing the mel matrix costs more than
# a short clip's FFT)
# ---------------------------------------------------------------------------------------

def _hamming(n: int) -> np.ndarray:
    # periodic ("fftbins=True"), as scipy.signal.get_window uses for spectral analysis
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


_WINDOWS = {"hamming": _hamming, "hann": _hann}


@lru_cache(maxsize=16)
def fft_window(window: str, win_length: int, n_fft: int) -> np.ndarray:
    """Analysis window centred in ``n_fft`` samples. ``(n_fft,) float64``."""
    w = _WINDOWS[window](win_length)
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft)
    out[left:left + win_length] = w
    out.setflags(write=False)
    return out


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, log above), as librosa with ``htk=False``."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_region = f >= min_log_hz
    mels = np.where(log_region, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filters. ``(n_mels, n_fft // 2 + 1) float64``."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]  # slaney area norm
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=16)
def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0..n_mfcc-1. ``(n_mfcc, n_mels) float64``."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
    basis[0] *= np.sqrt(0.5)
    basis.setflags(write=False)
    return basis


# ---------------------------------------------------------------------------------------
# The pipeline: waveform -> power spectrum -> log-mel (dB) -> MFCC -> normalised MFCC
# ---------------------------------------------------------------------------------------

def power_spectrogram(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """|STFT|^2 with centre zero padding. ``(n_samples,) -> (n_frames, n_fft // 2 + 1) float64``."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (n_samples,), got {y.shape}")
    pad = cfg.n_fft // 2
    padded = np.pad(y, (pad, pad))
    n_frames = 1 + (len(padded) - cfg.n_fft) // cfg.hop_length
    frames = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, cfg.n_fft),
        strides=(padded.strides[0] * cfg.hop_length, padded.strides[0]),
        writeable=False,
    )
    spec = np.fft.rfft(frames * fft_window(cfg.window, cfg.win_length, cfg.n_fft), axis=1)
    return spec.real ** 2 + spec.imag ** 2


def log_mel(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel power in dB, clamped to ``top_db`` below the clip's peak.
    ``(n_samples,) -> (n_frames, n_mels) float64``."""
    mel = power_spectrogram(y, cfg) @ mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.f_max).T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    if cfg.top_db is not None:
        db = np.maximum(db, db.max() - cfg.top_db)
    return db


def mfcc(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Raw (un-normalised) MFCC. ``(n_samples,) -> (n_frames, n_mfcc) float32``."""
    return (log_mel(y, cfg) @ dct_matrix(cfg.n_mfcc, cfg.n_mels).T).astype(np.float32)


def normalise(feats: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Apply the stored per-coefficient mean/std. ``(..., n_mfcc) float32``; no-op when unfitted."""
    if cfg.mean is None:
        return feats.astype(np.float32, copy=False)
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    return ((feats - mean) / std).astype(np.float32, copy=False)


def pad_batch(feats: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Zero-pad at the end of time, as every model expects.
    ``[(t_i, d)] -> ((b, max t_i, d) float32, (b,) int64 lengths)``."""
    lengths = np.array([len(f) for f in feats], dtype=np.int64)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("every item needs at least one frame")
    out = np.zeros((len(feats), int(lengths.max()), feats[0].shape[1]), dtype=np.float32)
    for i, f in enumerate(feats):
        out[i, :len(f)] = f
    return out, lengths


def extract(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Model input for one clip: MFCC then normalisation. ``(n_samples,) -> (n_frames, n_mfcc) float32``."""
    return normalise(mfcc(y, cfg), cfg)


@dataclass
class RunningStats:
    """Streaming per-coefficient mean/std over many clips (Chan et al. parallel update), so
    normalisation statistics can be fitted without holding the training set in memory."""

    n: int = 0
    mean: Optional[np.ndarray] = None
    m2: Optional[np.ndarray] = None

    def update(self, feats: np.ndarray) -> None:
        """Add frames. ``feats``: ``(n_frames, n_mfcc)``."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.shape[0] == 0:
            return
        nb, mb = feats.shape[0], feats.mean(axis=0)
        m2b = ((feats - mb) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        delta = mb - self.mean
        total = self.n + nb
        self.mean = self.mean + delta * nb / total
        self.m2 = self.m2 + m2b + delta ** 2 * self.n * nb / total
        self.n = total

    def merge(self, other: "RunningStats") -> None:
        """Combine with statistics gathered elsewhere (another process)."""
        if other.n == 0:
            return
        if self.n == 0:
            self.n, self.mean, self.m2 = other.n, other.mean.copy(), other.m2.copy()
            return
        delta = other.mean - self.mean
        total = self.n + other.n
        self.mean = self.mean + delta * other.n / total
        self.m2 = self.m2 + other.m2 + delta ** 2 * self.n * other.n / total
        self.n = total

    def result(self, eps: float = 1e-5) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """``(mean, std)`` as tuples of floats, std floored at ``eps``."""
        if self.n == 0:
            raise ValueError("no frames seen: cannot compute normalisation statistics")
        std = np.sqrt(self.m2 / self.n)
        return tuple(float(v) for v in self.mean), tuple(float(max(v, eps)) for v in std)

