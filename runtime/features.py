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
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import SerEdgeError

#: Bump when the meaning of a field changes; the runtime refuses a model from another schema.
#: Schema 2 added ``base``, ``n_chroma``, ``deltas``, ``delta_width`` and ``gain_norm_db``; a
#: schema-1 config (every model exported before) still loads and means exactly what it meant.
FEATURE_SCHEMA_VERSION = 2
SUPPORTED_SCHEMAS = (1, 2)
#: Fields a schema-1 config cannot carry (they are at their defaults there).
_SCHEMA2_FIELDS = ("base", "n_chroma", "deltas", "delta_width", "gain_norm_db", "speaker_norm")
BASES = ("mfcc", "logmel")
#: Gain normalisation never amplifies by more than this (a near-silent clip stays near-silent
#: instead of becoming amplified noise).
MAX_GAIN_DB = 80.0


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
    # -- schema 2 --------------------------------------------------------------------------
    base: str = "mfcc"  # "mfcc": n_mfcc cepstra; "logmel": n_mels log-mel bands (dB)
    n_chroma: int = 0  # chroma_stft bins appended after the base features (0 = none)
    deltas: int = 0  # 0, 1 (+ delta) or 2 (+ delta and delta-delta) of the base features
    delta_width: int = 9  # Savitzky-Golay window of the deltas (odd, >= 3), librosa's default
    gain_norm_db: Optional[float] = None  # scale each clip's active speech level to this dBFS first
    # Trained on features normalised per speaker (each speaker's own mean/std); ``mean``/``std``
    # are then the population statistics, used until a speaker's own are known (see
    # ``Recognizer.adapt``).
    speaker_norm: bool = False

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
        if not _is_int(self.schema_version) or self.schema_version not in SUPPORTED_SCHEMAS:
            raise FeatureConfigError(
                f"feature schema version {self.schema_version} is not supported "
                f"(this runtime reads versions {', '.join(map(str, SUPPORTED_SCHEMAS))})"
            )
        self._validate_schema2()
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
            if value is not None and len(value) != self.n_features:
                raise FeatureConfigError(f"{name} has {len(value)} values, expected n_features={self.n_features}")
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

    def _validate_schema2(self) -> None:
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in _SCHEMA2_FIELDS}
        if self.schema_version == 1:
            changed = [n for n, v in defaults.items() if getattr(self, n) != v]
            if changed:
                raise FeatureConfigError(f"schema-1 feature config cannot set {', '.join(changed)}")
        if not isinstance(self.base, str) or self.base not in BASES:
            raise FeatureConfigError(f"base must be one of {BASES}, got {self.base!r}")
        if not _is_int(self.n_chroma) or not 0 <= self.n_chroma <= 48:
            raise FeatureConfigError(f"n_chroma must be an integer in [0, 48], got {self.n_chroma!r}")
        if not _is_int(self.deltas) or self.deltas not in (0, 1, 2):
            raise FeatureConfigError(f"deltas must be 0, 1 or 2, got {self.deltas!r}")
        if not _is_int(self.delta_width) or self.delta_width < 3 or self.delta_width % 2 == 0 \
                or self.delta_width > 99:
            raise FeatureConfigError(f"delta_width must be an odd integer in [3, 99], got {self.delta_width!r}")
        if not isinstance(self.speaker_norm, bool):
            raise FeatureConfigError(f"speaker_norm must be true or false, got {self.speaker_norm!r}")
        if self.gain_norm_db is not None and not (_is_real(self.gain_norm_db) and -80 <= self.gain_norm_db <= 0):
            raise FeatureConfigError(f"gain_norm_db must be a number in [-80, 0] dBFS (or None), "
                                     f"got {self.gain_norm_db!r}")

    @property
    def base_dim(self) -> int:
        """Width of the base features: ``n_mfcc`` or ``n_mels``."""
        return self.n_mfcc if self.base == "mfcc" else self.n_mels

    @property
    def n_features(self) -> int:
        """Model input width: base, its deltas, then chroma."""
        return self.base_dim * (1 + self.deltas) + self.n_chroma

    @property
    def f_max(self) -> float:
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2.0

    @property
    def is_normalised(self) -> bool:
        return self.mean is not None

    def with_stats(self, mean: Sequence[float], std: Sequence[float]) -> FeatureConfig:
        """Copy with normalisation statistics (computed on the training set)."""
        return dataclasses.replace(self, mean=tuple(mean), std=tuple(std))

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in ("mean", "std"):
            if d[name] is not None:
                d[name] = list(d[name])
        if self.schema_version == 1:  # byte-identical metadata when an old model is re-exported
            for name in _SCHEMA2_FIELDS:
                del d[name]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> FeatureConfig:
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
    def from_json(cls, text: str) -> FeatureConfig:
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


def hz_to_mel(f: Union[float, np.ndarray]) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, log above), as librosa with ``htk=False``."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_region = f >= min_log_hz
    mels = np.where(log_region, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def mel_to_hz(m: Union[float, np.ndarray]) -> np.ndarray:
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

# Where the time goes (2.4 s at 16 kHz, n_fft 512, hop 160: 241 frames; one core, best of many
# runs): rfft 0.16 ms (pocketfft, one 512-point transform per row: the floor), window multiply
# 0.04, |.|^2 0.05, mel matmul 0.03 (float32 BLAS, in two band halves that skip most of the
# filterbank's zeros; 0.1 dense in float64), log10 + top_db 0.02, DCT 0.01: ~0.35 ms in all.
# Before this layout the same arithmetic took ~1 ms: every stage allocated a fresh ~1 MB array
# (padded copy, windowed frames, spectrum, real**2, imag**2, their sum), and glibc mmaps a fresh
# large array and page-faults it in on every call, which cost more than the FFT. Now frames are
# windowed, transformed and squared in blocks inside a per-thread workspace reused across calls;
# only the small (n_frames, n_mels) result is allocated. float32 only where it is safe for the
# 1e-4 parity: squared magnitudes and the mel matmul (relative rounding ~1e-7 of a sum of
# positive terms). The FFT stays float64 (in float32 quiet bins carry errors relative to the
# frame's loudest ones, and pocketfft's float32 path is no faster), and so do log10 and the DCT.
# Against librosa.feature.mfcc (benchmarks/run.py, RAVDESS clips, interleaved): 2.1-2.6x faster
# depending on machine load (1.8x before). The floor is numpy's FFT, one pocketfft call per
# frame with no SIMD across frames: ~45 % of our time, and librosa pays it too (in float32).
# No gain from: a float32 FFT, larger or smaller blocks, views made once per workspace; packing
# two real frames into one complex FFT (or even/odd samples into a 256-point one) saves < 10 %
# of the FFT and costs more than that to unpack; Hann windowing as a 3-tap filter on the
# spectrum (costs more than the multiply it saves). FFTW (pyfftw) runs these FFTs 1.8x faster,
# but it is GPL-licensed and importing pyfftw imports scipy wherever scipy is installed, so it
# is not an optional accelerator here.
# The shipped features (n_fft 1024, hop 512, 64 mels, 40 MFCC + 12 chroma, gain-normalised;
# 116 frames for a 3.7 s clip): rfft 0.18 ms, window 0.07, |X|^2 0.07, mel + chroma matmuls 0.06,
# dB/DCT/assembly 0.05, level 0.05: ~0.6 ms. The model's whole feature set comes from one STFT
# (:func:`mel_chroma`: chroma is one more small matmul on the power the mel bands need) and gain
# normalisation scales the mel power instead of the waveform; before, raw_features ran a float64
# STFT for the chroma, a dense float64 mel matmul and a scaled float64 copy of the clip: 1.2 ms.

#: Bytes of float64 windowed frames per block (64 frames of 512), but at least ``_MIN_BLOCK``
#: frames (long FFTs: 32 of 4096) while under ``_MAX_BLOCK_BYTES``. The workspace, ~3x this per
#: thread, stays near L2 size at n_fft 512; smaller blocks pay more per-call overhead, larger
#: ones more cache misses (measured interleaved with librosa on RAVDESS clips: 64 frames of 512
#: and 32 of 4096 were the best).
_BLOCK_BYTES = 1 << 18
_MIN_BLOCK = 32
_MAX_BLOCK_BYTES = 1 << 20
_WORK = threading.local()
#: ``np.fft.rfft(..., out=)`` exists from numpy 2.0; the runtime also runs on numpy >= 1.21.
_RFFT_HAS_OUT = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


class _Workspace:
    """STFT buffers for one ``(n_fft, hop, win_length, block)`` geometry, kept per thread and
    reused by every call (bounded: one block of frames, one geometry per thread). The window's
    length is part of the key: the columns of ``windowed`` outside it are zero once, for good."""

    def __init__(self, n_fft: int, hop: int, win_length: int, block: int) -> None:
        self.key = (n_fft, hop, win_length, block)
        n_bins = n_fft // 2 + 1
        self.segment = np.zeros((block - 1) * hop + n_fft)  # the input under one block of frames
        step = self.segment.strides[0]
        self.frames = np.lib.stride_tricks.as_strided(self.segment, shape=(block, n_fft),
                                                      strides=(hop * step, step), writeable=False)
        self.windowed = np.zeros((block, n_fft))
        self.spectrum = np.empty((block, n_bins), dtype=np.complex128)
        self.squares = np.empty((block, 2 * n_bins), dtype=np.float32)
        self.power = np.empty((block, n_bins), dtype=np.float32)


def _workspace(n_fft: int, hop: int, win_length: int) -> _Workspace:
    block = max(1, min(max(_MIN_BLOCK, _BLOCK_BYTES // (8 * n_fft)), _MAX_BLOCK_BYTES // (8 * n_fft)))
    ws = getattr(_WORK, "ws", None)
    if ws is None or ws.key != (n_fft, hop, win_length, block):
        ws = _WORK.ws = _Workspace(n_fft, hop, win_length, block)
    return ws


def _as_mono(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (n_samples,), got {y.shape}")
    return y


def _stft_blocks(y: np.ndarray, cfg: FeatureConfig) -> Iterator[Tuple[int, int, _Workspace]]:
    """Centre-padded, windowed STFT in blocks of frames: yields ``(first frame, b, ws)`` with
    ``ws.spectrum[:b]`` the ``(b, n_fft // 2 + 1) complex128`` spectra of frames
    ``first .. first + b - 1``, valid until the next step. ``y``: ``(n_samples,)``."""
    n_fft, hop, n = cfg.n_fft, cfg.hop_length, len(y)
    pad, n_frames = n_fft // 2, cfg.n_frames(len(y))
    ws = _workspace(n_fft, hop, cfg.win_length)
    block, seg = ws.windowed.shape[0], ws.segment
    window = fft_window(cfg.window, cfg.win_length, n_fft)
    left = (n_fft - cfg.win_length) // 2
    cols = slice(left, left + cfg.win_length)  # the window's support; ws.windowed is 0 elsewhere
    for f0 in range(0, n_frames, block):
        b = min(block, n_frames - f0)
        a = f0 * hop - pad  # the input sample under seg[0]; the zero padding is outside 0 .. n
        lo, hi = min(max(a, 0), n), max(min(a + len(seg), n), 0)
        if lo > a:  # the padding before the clip (first block only)
            seg[:lo - a] = 0.0
        seg[lo - a:max(lo, hi) - a] = y[lo:hi]
        if hi - a < len(seg):  # the padding after it (last block only)
            seg[max(lo, hi) - a:] = 0.0
        np.multiply(ws.frames[:b, cols], window[cols], out=ws.windowed[:b, cols])
        if _RFFT_HAS_OUT:
            np.fft.rfft(ws.windowed[:b], axis=1, out=ws.spectrum[:b])
        else:
            ws.spectrum[:b] = np.fft.rfft(ws.windowed[:b], axis=1)
        yield f0, b, ws


@lru_cache(maxsize=16)
def _mel_parts(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
               fmax: float) -> Tuple[Tuple[slice, slice, np.ndarray], ...]:
    """:func:`mel_filterbank` transposed (``power @ basis``) and cut in two at the band that
    minimises the multiply-adds: low bands only see low bins, high bands high bins (each
    triangle spans a few bins, so a dense matmul is ~80 % zeros; two halves skip about half).
    ``((bins, bands, (n_bins_part, n_bands_part) float32), ...)``; ``mel[:, bands] = power[:, bins] @ basis``."""
    weights = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    n_bins = weights.shape[1]
    nonzero = weights > 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), n_bins)  # first bin of each band
    last = np.where(nonzero.any(axis=1), n_bins - 1 - nonzero[:, ::-1].argmax(axis=1), 0)
    top = np.maximum.accumulate(last)  # last bin any of bands 0..s-1 uses
    bottom = np.minimum.accumulate(first[::-1])[::-1]  # first bin any of bands s.. uses
    cost = [n_bins * n_mels] + [(top[s - 1] + 1) * s + (n_bins - bottom[s]) * (n_mels - s) for s in range(1, n_mels)]
    split = int(np.argmin(cost))
    cuts = [(slice(0, n_bins), slice(0, n_mels))] if split == 0 else [
        (slice(0, int(top[split - 1]) + 1), slice(0, split)), (slice(int(bottom[split]), n_bins), slice(split, n_mels))]
    parts = []
    for bins, bands in cuts:
        basis = np.ascontiguousarray(weights[bands, bins].T, dtype=np.float32)
        basis.setflags(write=False)
        parts.append((bins, bands, basis))
    return tuple(parts)


def _block_power(ws: _Workspace, b: int) -> np.ndarray:
    """|X|^2 of the workspace's first ``b`` spectra. ``-> (b, n_fft // 2 + 1) float32`` (a view
    of the workspace, valid until the next block)."""
    squares, power = ws.squares[:b], ws.power[:b]
    np.square(ws.spectrum[:b].view(np.float64), out=squares)  # re^2, im^2 interleaved
    np.add(squares[:, 0::2], squares[:, 1::2], out=power)
    return power


def _project_mel(power: np.ndarray, cfg: FeatureConfig, out: np.ndarray) -> None:
    """``out[:] = power @ mel_filterbank.T`` with the float32 band halves of :func:`_mel_parts`.
    ``power (n, n_fft // 2 + 1) float32``, ``out (n, n_mels) float32``."""
    for bins, bands, basis in _mel_parts(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.f_max):
        np.matmul(power[:, bins], basis, out=out[:, bands])


def mel_chroma(y: np.ndarray, cfg: FeatureConfig, with_chroma: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Mel power and chroma of every frame (centre zero padding) from one blocked STFT: a
    frame's chroma costs one more small matmul on the power spectrum its mel bands need, not a
    second STFT. The one spectral front end of clips (:func:`raw_features`) and streams
    (:func:`~ser_edge.runtime.frontend.frame_spectra`).
    ``(n_samples,) -> ((n_frames, n_mels), (n_frames, n_chroma) or None)``, float32 (float64
    for input so loud that float32 would overflow); chroma as :func:`chroma_from_power`."""
    n = cfg.n_frames(len(y))
    mel = np.empty((n, cfg.n_mels), dtype=np.float32)
    raw = np.empty((n, cfg.n_chroma if with_chroma else 0), dtype=np.float32)
    basis = _chroma_basis(cfg.sample_rate, cfg.n_fft, cfg.n_chroma) if with_chroma else None
    with np.errstate(over="ignore", invalid="ignore"):  # float32 overflow: handled below
        for f0, b, ws in _stft_blocks(y, cfg):
            power = _block_power(ws, b)
            _project_mel(power, cfg, mel[f0:f0 + b])
            if basis is not None:
                np.matmul(power, basis, out=raw[f0:f0 + b])
    if not np.isfinite(mel).all():  # beyond float32 (|y| ~ 1e17; non-finite input stays non-finite)
        full = power_spectrogram(y, cfg)
        return mel_power(full, cfg), chroma_from_power(full, cfg) if with_chroma else None
    return mel, _peak_normalise(raw) if with_chroma else None


def _mel_power(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mel-band power. ``(n_samples,) -> (n_frames, n_mels) float32`` (float64 for input so
    loud that float32 would overflow)."""
    return mel_chroma(y, cfg, with_chroma=False)[0]


def power_spectrogram(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """|STFT|^2 with centre zero padding. ``(n_samples,) -> (n_frames, n_fft // 2 + 1) float64``."""
    y = _as_mono(y)
    out = np.empty((cfg.n_frames(len(y)), cfg.n_fft // 2 + 1))
    for f0, b, ws in _stft_blocks(y, cfg):
        spec, rows = ws.spectrum[:b], out[f0:f0 + b]
        np.multiply(spec.real, spec.real, out=rows)
        rows += np.square(spec.imag)
    return out


def _log10_mel(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """log10 of the mel power, floored at 1e-10 and clamped to ``top_db / 10`` below the clip's
    peak: :func:`log_mel` / 10, in place in one float64 array. ``-> (n_frames, n_mels) float64``."""
    mel = _mel_power(_as_mono(y), cfg)
    logs = np.maximum(mel, 1e-10, dtype=np.float64)
    np.log10(logs, out=logs)
    if cfg.top_db is not None:
        np.maximum(logs, logs.max() - cfg.top_db / 10.0, out=logs)
    return logs


@lru_cache(maxsize=16)
def _dct_db_t(n_mfcc: int, n_mels: int) -> np.ndarray:
    """``10 * dct_matrix(n_mfcc, n_mels).T``: the dB scale folded into the DCT (one pass fewer).
    ``(n_mels, n_mfcc) float64``."""
    basis = np.ascontiguousarray(10.0 * dct_matrix(n_mfcc, n_mels).T)
    basis.setflags(write=False)
    return basis


def log_mel(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel power in dB, clamped to ``top_db`` below the clip's peak.
    ``(n_samples,) -> (n_frames, n_mels) float64``."""
    db = _log10_mel(y, cfg)
    db *= 10.0
    return db


def mfcc(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Raw (un-normalised) MFCC. ``(n_samples,) -> (n_frames, n_mfcc) float32``."""
    return (_log10_mel(y, cfg) @ _dct_db_t(cfg.n_mfcc, cfg.n_mels)).astype(np.float32)


def normalise(feats: np.ndarray, cfg: FeatureConfig,
              stats: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> np.ndarray:
    """Apply per-feature ``(mean, std)``: ``stats`` when given (a speaker's own, for a
    ``speaker_norm`` model), else the config's. ``(..., n_features) float32``; no-op when unfitted."""
    if stats is None:
        if cfg.mean is None or cfg.std is None:
            return feats.astype(np.float32, copy=False)
        mean_std: Tuple[Sequence[float], Sequence[float]] = (cfg.mean, cfg.std)
    else:
        mean_std = stats
    mean = np.asarray(mean_std[0], dtype=np.float32)
    std = np.asarray(mean_std[1], dtype=np.float32)
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


# ---------------------------------------------------------------------------------------
# Schema-2 features: gain normalisation, deltas, chroma, and the assembled feature matrix
# ---------------------------------------------------------------------------------------

#: Gain normalisation measures the level on blocks of this many seconds ...
LEVEL_BLOCK_S = 0.01
#: ... over the blocks within this many dB of the 95th-percentile block: the speech, not the
#: pauses, so a clip's level does not depend on how much silence surrounds the utterance.
LEVEL_GATE_DB = 30.0


def active_level(y: np.ndarray, sample_rate: int) -> float:
    """Mean power of the active blocks of ``y`` (see :data:`LEVEL_GATE_DB`); 0 for silence.

    Scale-equivariant: ``active_level(g * y) == g**2 * active_level(y)`` exactly (the block
    selection depends on power ratios only), which is what makes gain normalisation remove the
    recording level completely. ``(n_samples,) -> float``."""
    y = np.asarray(y)
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    block = max(1, int(round(LEVEL_BLOCK_S * sample_rate)))
    n = len(y) // block
    if n == 0:
        return float(np.mean(np.square(y, dtype=np.float64))) if len(y) else 0.0
    blocks = y[:n * block].reshape(n, block)
    # float64 sums of squares of (exactly widened) float32 samples; np.percentile costs 10x
    # the partition it does (~25 us of a ~40 us clip-level measurement)
    power = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / block
    ref = _percentile(power, 95.0)
    if ref <= 0.0:
        return float(power.max())
    return float(power[power >= ref * 10.0 ** (-LEVEL_GATE_DB / 10.0)].mean())


def _percentile(x: np.ndarray, q: float) -> float:
    """``np.percentile(x, q)`` (linear interpolation) of a non-empty ``(n,)`` array, by partition."""
    k = (len(x) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(x) - 1)
    part = np.partition(x, (lo, hi))
    return float(part[lo] + (part[hi] - part[lo]) * (k - lo))


def gain_db(y: np.ndarray, sample_rate: int, target_db: float) -> float:
    """The gain (dB) that brings ``y``'s :func:`active_level` to ``target_db`` dBFS, at most
    :data:`MAX_GAIN_DB`; 0 for silence."""
    level = active_level(y, sample_rate)
    return 0.0 if level <= 0.0 else min(target_db - 10.0 * math.log10(level), MAX_GAIN_DB)


def power_gain(y: np.ndarray, cfg: FeatureConfig) -> float:
    """The power gain (amplitude squared) :func:`gain_normalise` applies to ``y``; 1 when the
    config has no gain normalisation. Mel power and power spectra scale by it exactly (chroma is
    scale invariant), so features are gain-normalised without touching the waveform."""
    return 1.0 if cfg.gain_norm_db is None else 10.0 ** (gain_db(y, cfg.sample_rate, cfg.gain_norm_db) / 10.0)


def gain_normalise(y: np.ndarray, sample_rate: int, target_db: float) -> np.ndarray:
    """``y`` scaled so its :func:`active_level` is ``target_db`` dBFS (RMS re full scale),
    amplifying by at most :data:`MAX_GAIN_DB`. ``(n,) -> (n,) float64`` (no clipping: the
    features are computed in floating point)."""
    y = np.asarray(y, dtype=np.float64)
    return y * 10.0 ** (gain_db(y, sample_rate, target_db) / 20.0)


@lru_cache(maxsize=8)
def savgol_coeffs(width: int, order: int) -> np.ndarray:
    """Savitzky-Golay weights of the ``order``-th derivative of a degree-``order`` polynomial
    fitted over ``width`` points, as ``scipy.signal.savgol_coeffs(width, order, deriv=order,
    use="dot")``. ``(width,) float64``; ``out[t] = coeffs @ x[t - width//2 : t + width//2 + 1]``."""
    k = np.arange(width, dtype=np.float64) - width // 2
    vander = k[None, :] ** np.arange(order + 1)[:, None]  # (order + 1, width)
    coeffs = np.linalg.pinv(vander.T)[order] * math.factorial(order)
    coeffs.setflags(write=False)
    return coeffs


def delta(feats: np.ndarray, order: int = 1, width: int = 9) -> np.ndarray:
    """Local derivative over time, as ``librosa.feature.delta(feats.T, width, order,
    mode="interp").T``. ``(n_frames, d) -> (n_frames, d) float64``.

    In "interp" mode the edge frames take the derivative of the polynomial fitted to the first
    (last) ``width`` frames, which for degree == derivative order is a constant: the first
    (last) full-window value. Where librosa refuses (fewer frames than ``width``), the window
    shrinks to the largest odd size that fits (none below 3 frames: zeros)."""
    x = np.asarray(feats, dtype=np.float64)
    n = x.shape[0]
    if n < width:
        width = n if n % 2 else n - 1
        if width < max(3, order + 2):
            return np.zeros_like(x)
    c = savgol_coeffs(width, order)
    windows = np.lib.stride_tricks.sliding_window_view(x, width, axis=0)  # (n - w + 1, d, w)
    valid = windows @ c  # (n - w + 1, d)
    half = width // 2
    return np.concatenate([np.repeat(valid[:1], half, axis=0), valid, np.repeat(valid[-1:], half, axis=0)])


@lru_cache(maxsize=8)
def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int) -> np.ndarray:
    """``librosa.filters.chroma(sr, n_fft, n_chroma, tuning=0)`` (Gaussian bumps per pitch
    class, 2-norm per FFT bin, octave weighting centred on C5 +- 2 octaves, starting at C).
    ``(n_chroma, n_fft // 2 + 1) float64``."""
    freqs = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(freqs / (440.0 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))  # a made-up 0 Hz bin
    binwidth = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(n_chroma, dtype=np.float64)).T
    half = np.round(float(n_chroma) / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / binwidth[None, :]) ** 2)
    norms = np.sqrt(np.sum(wts ** 2, axis=0, keepdims=True))
    wts = wts / np.where(norms > np.finfo(np.float64).tiny, norms, 1.0)
    wts *= np.exp(-0.5 * ((frqbins / n_chroma - 5.0) / 2.0) ** 2)[None, :]
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    out = np.ascontiguousarray(wts[:, :n_fft // 2 + 1])
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def _chroma_basis(sample_rate: int, n_fft: int, n_chroma: int) -> np.ndarray:
    """:func:`chroma_filterbank` transposed for ``power @ basis``: ``(n_fft // 2 + 1, n_chroma)
    float32`` (the weights are positive, so a float32 sum is within ~1e-7 relative)."""
    basis = np.ascontiguousarray(chroma_filterbank(sample_rate, n_fft, n_chroma).T, dtype=np.float32)
    basis.setflags(write=False)
    return basis


def _peak_normalise(raw: np.ndarray) -> np.ndarray:
    """Each row scaled to max 1 (librosa's ``norm=inf``; an all-zero row stays zero), in place."""
    peak = np.abs(raw).max(axis=1, keepdims=True)
    raw /= np.where(peak > np.finfo(raw.dtype).tiny, peak, 1.0)
    return raw


def chroma_from_power(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Chroma of a power spectrogram, each frame scaled to max 1 (librosa's ``norm=inf``;
    an all-zero frame stays zero). ``(n_frames, n_fft // 2 + 1) -> (n_frames, n_chroma)``, in
    the power's precision (float32 or float64)."""
    return _peak_normalise(power @ _chroma_basis(cfg.sample_rate, cfg.n_fft, cfg.n_chroma))


def chroma(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``librosa.feature.chroma_stft(y, tuning=0, ...)`` with the config's STFT.
    ``(n_samples,) -> (n_frames, n_chroma) float32``."""
    return mel_chroma(_as_mono(y), cfg, with_chroma=True)[1].astype(np.float32)  # type: ignore[union-attr]


def gate_chroma(chroma: np.ndarray, mel: np.ndarray, top_db: Optional[float]) -> np.ndarray:
    """Chroma of frames whose mel power (summed over bands) lies more than ``top_db`` below the
    loudest frame's set to 0: silence has no pitch class. librosa normalises every frame to a peak
    of 1, so a pause's noise floor gets full-scale chroma, and a recording played quieter (its
    floor now the PCM quantisation noise) would get a different one; gated, both are 0, which
    keeps the features independent of the recording level.
    ``chroma (n, n_chroma)``, ``mel (n, n_mels)`` -> ``(n, n_chroma)``."""
    if top_db is None or not len(mel):
        return chroma
    frame_db = 10.0 * np.log10(np.maximum(mel.sum(axis=1), 1e-10))
    return np.where((frame_db >= frame_db.max() - top_db)[:, None], chroma, 0.0)


def features_from_mel(mel: np.ndarray, chroma: Optional[np.ndarray], cfg: FeatureConfig,
                      clamp_ref: Optional[float] = None) -> np.ndarray:
    """Un-normalised model features from the mel power (and chroma) of consecutive frames: dB
    (floored at 1e-10), ``top_db`` clamp relative to ``clamp_ref`` dB (default: the loudest value
    of ``mel``), DCT for base "mfcc", deltas, chroma gated by :func:`gate_chroma`. The one
    assembly step of :func:`raw_features` (a whole clip) and of the stream front end (cached
    frames). ``mel (n, n_mels)``, ``chroma (n, n_chroma)`` -> ``(n, n_features) float32``."""
    db = np.maximum(mel, 1e-10, dtype=np.float64)  # float64 from here: float32 mel is exact in it
    np.log10(db, out=db)
    db *= 10.0
    if cfg.top_db is not None:
        np.maximum(db, (db.max() if clamp_ref is None else clamp_ref) - cfg.top_db, out=db)
    base = db @ dct_matrix(cfg.n_mfcc, cfg.n_mels).T if cfg.base == "mfcc" else db
    parts = [base] + [delta(base, k, cfg.delta_width) for k in range(1, cfg.deltas + 1)]
    if cfg.n_chroma and chroma is not None:
        parts.append(gate_chroma(chroma, mel, cfg.top_db))
    return (np.concatenate(parts, axis=1) if len(parts) > 1 else base).astype(np.float32)


def mel_power(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Slaney mel power of power spectra, as a clip's frames get it (:func:`_project_mel`).
    ``(n_frames, n_fft // 2 + 1) -> (n_frames, n_mels) float32`` (float64 beyond float32's range)."""
    with np.errstate(over="ignore"):
        p32 = np.asarray(power, dtype=np.float32)
    if not np.isfinite(p32).all():
        return power @ mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.f_max).T
    out = np.empty((len(p32), cfg.n_mels), dtype=np.float32)
    _project_mel(p32, cfg, out)
    return out


def raw_features(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Un-normalised model features of one clip, in column order: base (MFCC or log-mel),
    its delta, its delta-delta (``cfg.deltas``), chroma (``cfg.n_chroma``, gated by
    :func:`gate_chroma`); after per-clip gain normalisation when ``cfg.gain_norm_db`` is set.
    ``(n_samples,) at cfg.sample_rate -> (n_frames, cfg.n_features) float32``.

    A schema-1 config (plain MFCC) takes the :func:`mfcc` path, so old models see exactly the
    features they were trained on. Gain normalisation scales the mel power by :func:`power_gain`
    (what scaling the waveform would do to it, without a scaled copy of the waveform)."""
    y = _as_mono(y)
    if cfg.base == "mfcc" and not cfg.deltas and not cfg.n_chroma and cfg.gain_norm_db is None:
        return mfcc(y, cfg)
    mel, chroma = mel_chroma(y, cfg, with_chroma=bool(cfg.n_chroma))
    if cfg.gain_norm_db is not None:
        mel = np.multiply(mel, power_gain(y, cfg), dtype=np.float64)
    return features_from_mel(mel, chroma, cfg)


def extract(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Model input for one clip: :func:`raw_features` then normalisation.
    ``(n_samples,) -> (n_frames, n_features) float32``."""
    return normalise(raw_features(y, cfg), cfg)


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

    def merge(self, other: RunningStats) -> None:
        """Combine with statistics gathered elsewhere (another process)."""
        if other.n == 0 or other.mean is None or other.m2 is None:  # (n == 0 iff no arrays yet)
            return
        if self.n == 0 or self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = other.n, other.mean.copy(), other.m2.copy()
            return
        delta = other.mean - self.mean
        total = self.n + other.n
        self.mean = self.mean + delta * other.n / total
        self.m2 = self.m2 + other.m2 + delta ** 2 * self.n * other.n / total
        self.n = total

    def result(self, eps: float = 1e-5) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """``(mean, std)`` as tuples of floats, std floored at ``eps``."""
        if self.n == 0 or self.mean is None or self.m2 is None:
            raise ValueError("no frames seen: cannot compute normalisation statistics")
        std = np.sqrt(self.m2 / self.n)
        return tuple(float(v) for v in self.mean), tuple(float(max(v, eps)) for v in std)

